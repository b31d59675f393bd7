'use strict';
// An application using the OpenFeature server SDK, as a user would write it: it
// evaluates one flag on a loop and reports what it sees. The kind e2e runs it in pods
// next to the sidecar flagpole injects (see e2e/apps/README.md).
//
// Provider (PROVIDER):
//   flagd  @openfeature/flagd-provider, configured only by the FLAGD_* environment the
//          webhook injects (FLAGD_RESOLVER=rpc, FLAGD_PORT...) or the pod spec sets
//          (FLAGD_RESOLVER=in-process, FLAGD_PORT=8015 for the sidecar's sync port)
//   ofrep  @openfeature/ofrep-provider at OFREP_URL (default http://localhost:8016),
//          with "Authorization: Bearer <token>" when OFREP_TOKEN_FILE names a file
//
// Flag: FLAG_KEY, FLAG_TYPE (boolean, string, number, object), DEFAULT_VALUE (JSON),
// CONTEXT (JSON evaluation context). The loop evaluates every INTERVAL_MS (default
// 20); RATE > 0 adds that many evaluations per second (benchmarks).
//
// GET /status on PORT (default 8080) answers JSON: the last value, variant, reason
// and error, every change of value with the time the app first saw it (ms since the
// epoch), and counters. Each change is also logged as one JSON line.
const http = require('node:http');
const fs = require('node:fs');
const { OpenFeature, ProviderEvents } = require('@openfeature/server-sdk');

const env = process.env;
const providerName = env.PROVIDER || 'flagd';
const flagKey = env.FLAG_KEY || 'flag';
const flagType = env.FLAG_TYPE || 'string';
const intervalMs = Number(env.INTERVAL_MS || 20);
const rate = Number(env.RATE || 0);
const port = Number(env.PORT || 8080);
const defaults = { boolean: false, string: 'default', number: 0, object: {} };
const defaultValue = env.DEFAULT_VALUE ? JSON.parse(env.DEFAULT_VALUE) : defaults[flagType];
const context = env.CONTEXT ? JSON.parse(env.CONTEXT) : {};
if (!(flagType in defaults)) {
  console.error(JSON.stringify({ msg: 'FLAG_TYPE must be boolean, string, number or object', got: flagType }));
  process.exit(2);
}

function newProvider() {
  switch (providerName) {
    case 'flagd': {
      const { FlagdProvider } = require('@openfeature/flagd-provider');
      return new FlagdProvider();
    }
    case 'ofrep': {
      const { OFREPProvider } = require('@openfeature/ofrep-provider');
      const options = { baseUrl: env.OFREP_URL || 'http://localhost:8016' };
      if (env.OFREP_TOKEN_FILE) {
        // Read at every evaluation, so a rotated Secret is picked up.
        options.headersFactory = () => [['Authorization', 'Bearer ' + fs.readFileSync(env.OFREP_TOKEN_FILE, 'utf8').trim()]];
      }
      return new OFREPProvider(options);
    }
    default:
      console.error(JSON.stringify({ msg: 'PROVIDER must be flagd or ofrep', got: providerName }));
      process.exit(2);
  }
}

const state = {
  provider: providerName,
  resolver: providerName === 'flagd' ? env.FLAGD_RESOLVER || 'rpc' : 'ofrep',
  flagKey,
  startedAt: Date.now(),
  readyAt: null,
  providerEvents: [],
  value: undefined,
  variant: undefined,
  reason: undefined,
  errorCode: undefined,
  errorMessage: undefined,
  // What the provider threw, from an error hook (the SDK's details carry only the
  // code and message): its class name and, for HTTP errors, the response status.
  errorType: undefined,
  errorStatus: undefined,
  evaluations: 0,
  errors: 0,
  lastErrorAt: null,
  lastSuccessAt: null,
  changes: [],
};

const client = OpenFeature.getClient('flagpole-e2e');
client.addHooks({
  error(_hookContext, err) {
    state.errorType = err && err.name;
    state.errorStatus = err && err.response && err.response.status;
  },
});
const evaluate = {
  boolean: (k, d, c) => client.getBooleanDetails(k, d, c),
  string: (k, d, c) => client.getStringDetails(k, d, c),
  number: (k, d, c) => client.getNumberDetails(k, d, c),
  object: (k, d, c) => client.getObjectDetails(k, d, c),
}[flagType];

function record(details) {
  const now = Date.now();
  state.evaluations++;
  if (details.errorCode) {
    state.errors++;
    state.lastErrorAt = now;
    state.errorCode = details.errorCode;
    state.errorMessage = details.errorMessage;
    return;
  }
  state.lastSuccessAt = now;
  state.errorCode = undefined;
  state.errorMessage = undefined;
  state.errorType = undefined;
  state.errorStatus = undefined;
  state.variant = details.variant;
  state.reason = details.reason;
  const value = JSON.stringify(details.value);
  if (value !== JSON.stringify(state.value)) {
    state.value = details.value;
    state.changes.push({ value: details.value, variant: details.variant, at: now });
    if (state.changes.length > 200) state.changes.shift();
    console.log(JSON.stringify({ msg: 'value', flag: flagKey, value: details.value, variant: details.variant, reason: details.reason, at: now }));
  }
}

async function once() {
  try {
    record(await evaluate(flagKey, defaultValue, context));
  } catch (err) {
    record({ errorCode: 'EXCEPTION', errorMessage: String(err) });
  }
}

async function loop() {
  for (;;) {
    await once();
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

// load adds RATE evaluations per second in ticks of 10 ms.
function load() {
  if (rate <= 0) return;
  const perTick = rate / 100;
  let owed = 0;
  setInterval(() => {
    owed += perTick;
    while (owed >= 1) {
      owed--;
      once();
    }
  }, 10);
}

function serve() {
  http
    .createServer((req, res) => {
      if (req.method === 'GET' && (req.url === '/status' || req.url === '/')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ...state, now: Date.now() }));
        return;
      }
      if (req.method === 'GET' && req.url === '/healthz') {
        res.writeHead(200);
        res.end('ok');
        return;
      }
      res.writeHead(404);
      res.end();
    })
    .listen(port, () => console.log(JSON.stringify({ msg: 'serving status', port })));
}

async function main() {
  serve();
  for (const ev of [ProviderEvents.Ready, ProviderEvents.Error, ProviderEvents.Stale, ProviderEvents.ConfigurationChanged]) {
    OpenFeature.addHandler(ev, () => {
      state.providerEvents.push({ event: ev, at: Date.now() });
      if (state.providerEvents.length > 200) state.providerEvents.shift();
      if (ev === ProviderEvents.Ready && state.readyAt === null) state.readyAt = Date.now();
    });
  }
  // The loop starts at once: evaluations before the provider is ready report
  // PROVIDER_NOT_READY, which the status shows.
  OpenFeature.setProvider(newProvider());
  load();
  await loop();
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    await OpenFeature.close().catch(() => {});
    process.exit(0);
  });
}
main().catch((err) => {
  console.error(JSON.stringify({ msg: 'fatal', error: String(err && err.stack ? err.stack : err) }));
  process.exit(1);
});
