'use strict';
// A flag document server for the http provider scenario of the kind e2e: serves
// GET /flags.json only with "Authorization: Bearer <token>" (the token read from
// TOKEN_FILE, a mounted Secret), 401 otherwise. The document starts as FLAGS (JSON);
// PUT /admin/flags replaces it (the test reaches it through the API server's pod
// proxy). GET /admin/stats counts served and refused requests; GET /healthz is the
// readiness probe. Listens on PORT
// (default 8080).
const http = require('node:http');
const fs = require('node:fs');
const crypto = require('node:crypto');

const port = Number(process.env.PORT || 8080);
let document = process.env.FLAGS || '{"flags":{}}';
const stats = { served: 0, refused: 0, updates: 0 };

function authorized(header) {
  const token = fs.readFileSync(process.env.TOKEN_FILE, 'utf8').trim();
  const want = Buffer.from('Bearer ' + token);
  const got = Buffer.from(header || '');
  return got.length === want.length && crypto.timingSafeEqual(got, want);
}

http
  .createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/flags.json') {
      if (!authorized(req.headers.authorization)) {
        stats.refused++;
        res.writeHead(401, { 'www-authenticate': 'Bearer' });
        res.end('unauthorized\n');
        return;
      }
      stats.served++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(document);
      return;
    }
    if (req.method === 'PUT' && req.url === '/admin/flags') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        try {
          JSON.parse(body);
        } catch (err) {
          res.writeHead(400);
          res.end('not JSON: ' + err.message + '\n');
          return;
        }
        document = body;
        stats.updates++;
        res.writeHead(204);
        res.end();
      });
      return;
    }
    if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200);
      res.end('ok');
      return;
    }
    if (req.method === 'GET' && req.url === '/admin/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    res.writeHead(404);
    res.end();
  })
  .listen(port, () => console.log(JSON.stringify({ msg: 'serving flags', port })));
