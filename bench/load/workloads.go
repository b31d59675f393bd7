package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
	"google.golang.org/grpc"
)

// Workload names.
const (
	wlConnectStatic    = "connect-static"
	wlConnectTargeting = "connect-targeting"
	wlGRPCStatic       = "grpc-static"
	wlGRPCTargeting    = "grpc-targeting"
	wlGRPCString       = "grpc-string"
	wlGRPCInt          = "grpc-int"
	wlGRPCFloat        = "grpc-float"
	wlGRPCObject       = "grpc-object"
	wlGRPCAll          = "grpc-all"
	wlGRPCShared       = "grpc-static-1conn"
	wlGRPCTLS          = "grpc-tls"
	wlGRPCUnix         = "grpc-unix"
	wlOFREPSingle      = "ofrep-single"
	wlOFREPBulk        = "ofrep-bulk"
	wlOFREPBulk304     = "ofrep-bulk-304"
	wlFloorBulk        = "floor-bulk"
	wlFloorHTTP        = "floor-http"
	wlFloorGRPC        = "floor-grpc"
	wlFloorGRPCTLS     = "floor-grpc-tls"
	wlSyncFanout       = "sync-fanout"
	wlEventFanout      = "eventstream-fanout"
)

// transport is how a workload reaches the evaluation listener.
type transport uint8

const (
	transportPlain transport = iota // TCP without TLS (HTTP/1.1, h2c)
	transportTLS
	transportUnix
)

// workload is one thing the harness measures.
type workload struct {
	name      string
	transport transport
	// floor is the floor workload (same transport, a handler doing no work) this
	// one is reported as a multiple of
	floor    string
	onFloor  bool // runs against the floor server, not flagd
	fanout   bool // a fan-out workload (fanout.go), not a request loop
	describe string
}

// workloads lists every workload in run order: each floor before the workloads
// compared with it.
func workloads() []workload {
	return []workload{
		{name: wlFloorHTTP, onFloor: true, describe: "the floor of HTTP/1.1: a net/http handler on the same listener stack (server.Serve, same limits) that reads the body and writes the fixed Connect JSON answer of `connect-static`"},
		{name: wlConnectStatic, floor: wlFloorHTTP, describe: "POST /flagd.evaluation.v1.Service/ResolveBoolean, Connect JSON over HTTP/1.1, `" + connectStaticBody + "`"},
		{name: wlConnectTargeting, floor: wlFloorHTTP, describe: "the same with `" + connectTargetingBody + "` (an `if`/`ends_with` rule)"},
		{name: wlOFREPSingle, floor: wlFloorHTTP, describe: "POST /ofrep/v1/evaluate/flags/" + flaggen.StaticBoolKey + " over HTTP/1.1, `" + ofrepSingleBody + "`"},
		{name: wlFloorBulk, onFloor: true, describe: "the floor of `ofrep-bulk`: the HTTP floor answering the same request with the bytes of flagpole's bulk answer (fetched once at the floor's start): the transport's cost of a body that size"},
		{name: wlOFREPBulk, floor: wlFloorBulk, describe: "POST /ofrep/v1/evaluate/flags (every flag), `" + ofrepBulkBody + "`, no If-None-Match (full evaluation each time)"},
		{name: wlOFREPBulk304, floor: wlFloorHTTP, describe: "the same with the ETag of the first answer in If-None-Match: 304 Not Modified"},
		{name: wlFloorGRPC, onFloor: true, describe: "the floor of gRPC: a grpc-go unary handler on the same listener stack (the protocol split, server.GRPCServerOptions) that reads the request and sends the fixed response of `grpc-static`"},
		{name: wlGRPCStatic, floor: wlFloorGRPC, describe: "flagd.evaluation.v1 ResolveBoolean over gRPC (grpc-go client, h2c, one connection per client), static flag, empty context"},
		{name: wlGRPCTargeting, floor: wlFloorGRPC, describe: "the same on the targeting flag with a 3-key context (flagd's targeting shape)"},
		{name: wlGRPCString, floor: wlFloorGRPC, describe: "flagd.evaluation.v2 ResolveString, static flag"},
		{name: wlGRPCInt, floor: wlFloorGRPC, describe: "flagd.evaluation.v2 ResolveInt, static flag"},
		{name: wlGRPCFloat, floor: wlFloorGRPC, describe: "flagd.evaluation.v2 ResolveFloat, static flag"},
		{name: wlGRPCObject, floor: wlFloorGRPC, describe: "flagd.evaluation.v2 ResolveObject, static flag (3-key object)"},
		{name: wlGRPCAll, describe: "flagd.evaluation.v1 ResolveAll (every flag) with a 3-key context"},
		{name: wlGRPCShared, floor: wlFloorGRPC, describe: "`grpc-static` with every client on one HTTP/2 connection (one provider, concurrent evaluations)"},
		{name: wlGRPCUnix, transport: transportUnix, floor: wlFloorGRPC, describe: "`grpc-static` over a unix socket (--socket-path)"},
		{name: wlFloorGRPCTLS, transport: transportTLS, onFloor: true, describe: "the gRPC floor over TLS"},
		{name: wlGRPCTLS, transport: transportTLS, floor: wlFloorGRPCTLS, describe: "`grpc-static` over TLS (ECDSA P-256, TLS 1.3)"},
		{name: wlSyncFanout, fanout: true, describe: "flagd.sync.v1 SyncFlags: -fanout streams (one connection each) held open, then -changes flag file changes (rename): time from the rename to each stream's new payload; first on the fan-out floor (flagd mode's sync server around a service sending the file as it is)"},
		{name: wlEventFanout, fanout: true, describe: "EventStream (v1, gRPC): -fanout streams held open, then -changes flag file changes: time from the rename to each stream's configuration_change; first on the fan-out floor (the gRPC floor's EventStream)"},
	}
}

// allWorkloads lists every workload name in run order.
func allWorkloads() []string {
	var names []string
	for _, w := range workloads() {
		names = append(names, w.name)
	}
	return names
}

// findWorkload returns the workload of a name, the zero workload for an unknown
// name (-workloads is checked against allWorkloads when the flags are parsed).
func findWorkload(name string) workload {
	for _, w := range workloads() {
		if w.name == name {
			return w
		}
	}
	return workload{}
}

// workloadDescription says what a workload sends, for the report.
func workloadDescription(name string) string {
	w := findWorkload(strings.TrimSuffix(name, " (wrk)"))
	return w.describe
}

// Request bodies (encoded once per client, see rawRequest).
const (
	connectStaticBody    = `{"flagKey":"` + flaggen.StaticBoolKey + `","context":{}}`
	connectTargetingBody = `{"flagKey":"` + flaggen.TargetingBoolKey + `","context":{"targetingKey":"user-1","email":"ada` + flaggen.TargetingEmailSuffix + `","country":"de"}}`
	ofrepSingleBody      = `{"context":{}}`
	ofrepBulkBody        = `{"context":{"targetingKey":"user-1","email":"ada` + flaggen.TargetingEmailSuffix + `","country":"de","version":"2.3.0"}}`
)

// caller issues one request and checks its answer; each client goroutine owns one.
type caller interface {
	// call sends one request; a wrong answer is an error.
	call(ctx context.Context) error
	// close releases the caller's connection.
	close()
}

// newCaller returns a caller of workload w against s. Its first call validates the
// answer fully (decoding it); later calls check it cheaply. shared is the one
// connection of grpc-static-1conn.
func newCaller(w workload, s *server, flagCount int, timeout time.Duration, shared *grpc.ClientConn) (caller, error) {
	switch w.name {
	case wlConnectStatic, wlFloorHTTP:
		return &httpCaller{conn: newRawConn(s.eval, timeout),
			req:   rawRequest(s.eval, "/flagd.evaluation.v1.Service/ResolveBoolean", connectStaticBody),
			check: connectCheck("STATIC"), validate: connectValidate("STATIC")}, nil
	case wlConnectTargeting:
		return &httpCaller{conn: newRawConn(s.eval, timeout),
			req:   rawRequest(s.eval, "/flagd.evaluation.v1.Service/ResolveBoolean", connectTargetingBody),
			check: connectCheck("TARGETING_MATCH"), validate: connectValidate("TARGETING_MATCH")}, nil
	case wlOFREPSingle:
		return &httpCaller{conn: newRawConn(s.ofrep, timeout),
			req:   rawRequest(s.ofrep, "/ofrep/v1/evaluate/flags/"+flaggen.StaticBoolKey, ofrepSingleBody),
			check: ofrepSingleCheck(), validate: ofrepSingleValidate}, nil
	case wlOFREPBulk, wlOFREPBulk304, wlFloorBulk:
		addr := s.ofrep
		if w.onFloor { // one listener serves everything
			addr = s.eval
		}
		c := &httpCaller{conn: newRawConn(addr, timeout),
			req: rawRequest(addr, "/ofrep/v1/evaluate/flags", ofrepBulkBody)}
		c.validate = func(status int, body, etag []byte) error {
			if err := ofrepBulkValidate(status, body, flagCount); err != nil {
				return err
			}
			if len(etag) == 0 {
				return errors.New("bulk answer without ETag")
			}
			c.firstETag, c.firstLen = slices.Clone(etag), len(body)
			if w.name == wlOFREPBulk304 {
				c.req = rawRequest(addr, "/ofrep/v1/evaluate/flags", ofrepBulkBody, "If-None-Match: "+string(etag))
			}
			return nil
		}
		// The same context gives the same answer: same ETag, same length.
		c.check = func(status int, body, etag []byte) bool {
			if w.name == wlOFREPBulk304 {
				return status == http.StatusNotModified && len(body) == 0 && bytes.Equal(etag, c.firstETag)
			}
			return status == http.StatusOK && len(body) == c.firstLen && bytes.Equal(etag, c.firstETag)
		}
		return c, nil
	}
	calls := grpcCalls(flagCount)
	spec, ok := calls[w.name]
	switch w.name {
	case wlFloorGRPC, wlFloorGRPCTLS, wlGRPCShared, wlGRPCTLS, wlGRPCUnix:
		spec, ok = calls[wlGRPCStatic], true
	}
	if !ok {
		return nil, fmt.Errorf("unknown workload %q (known: %s)", w.name, strings.Join(allWorkloads(), ", "))
	}
	if w.name == wlGRPCShared {
		return newGRPCCaller(shared, false, spec, timeout)
	}
	t, err := evalTarget(s, w.transport)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.name, err)
	}
	conn, err := dialGRPC(t)
	if err != nil {
		return nil, err
	}
	return newGRPCCaller(conn, true, spec, timeout)
}

// httpCaller is a caller over a raw HTTP/1.1 keep-alive connection.
type httpCaller struct {
	conn      *rawConn
	req       []byte
	validated bool
	validate  func(status int, body, etag []byte) error
	check     func(status int, body, etag []byte) bool
	firstETag []byte
	firstLen  int
}

// call sends the pre-encoded request; the first answer is validated, later ones checked.
func (c *httpCaller) call(context.Context) error {
	status, body, etag, err := c.conn.do(c.req)
	if err != nil {
		return err
	}
	if !c.validated {
		if err := c.validate(status, body, etag); err != nil {
			return err
		}
		c.validated = true
		return nil
	}
	if !c.check(status, body, etag) {
		return fmt.Errorf("wrong answer: status %d, body %.300q", status, body)
	}
	return nil
}

// close closes the connection.
func (c *httpCaller) close() { c.conn.close() }

// fragment is a JSON member to look for in an answer: "name": value.
type fragment struct{ key, value []byte }

// field returns the fragment "name": value (value as JSON, e.g. `true` or `"STATIC"`).
func field(name, value string) fragment {
	return fragment{key: []byte(`"` + name + `":`), value: []byte(value)}
}

// in reports whether body holds the fragment (whitespace allowed after the colon, as
// protojson may emit it), without allocating.
func (f fragment) in(body []byte) bool {
	for rest := body; ; {
		i := bytes.Index(rest, f.key)
		if i < 0 {
			return false
		}
		rest = bytes.TrimLeft(rest[i+len(f.key):], " ")
		if bytes.HasPrefix(rest, f.value) {
			return true
		}
	}
}

// connectCheck is the cheap check of a ResolveBoolean Connect JSON answer.
func connectCheck(reason string) func(int, []byte, []byte) bool {
	value, why := field("value", "true"), field("reason", `"`+reason+`"`)
	return func(status int, body, _ []byte) bool {
		return status == http.StatusOK && value.in(body) && why.in(body)
	}
}

// connectValidate decodes a ResolveBoolean Connect JSON answer.
func connectValidate(reason string) func(int, []byte, []byte) error {
	return func(status int, body, _ []byte) error {
		var got struct {
			Value   *bool  `json:"value"`
			Reason  string `json:"reason"`
			Variant string `json:"variant"`
		}
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %.300q", status, body)
		}
		if err := json.Unmarshal(body, &got); err != nil {
			return fmt.Errorf("answer %.300q: %w", body, err)
		}
		if got.Value == nil || !*got.Value || got.Reason != reason || got.Variant != "on" {
			return fmt.Errorf("answer %.300q, want value true, reason %s, variant on", body, reason)
		}
		return nil
	}
}

// ofrepSingleCheck is the cheap check of the OFREP single answer.
func ofrepSingleCheck() func(int, []byte, []byte) bool {
	value, why := field("value", "true"), field("reason", `"STATIC"`)
	return func(status int, body, _ []byte) bool {
		return status == http.StatusOK && value.in(body) && why.in(body)
	}
}

// ofrepSingleValidate decodes the OFREP single answer.
func ofrepSingleValidate(status int, body, _ []byte) error {
	var got struct {
		Value  *bool  `json:"value"`
		Key    string `json:"key"`
		Reason string `json:"reason"`
	}
	if status != http.StatusOK {
		return fmt.Errorf("status %d: %.300q", status, body)
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("answer %.300q: %w", body, err)
	}
	if got.Value == nil || !*got.Value || got.Key != flaggen.StaticBoolKey || got.Reason != "STATIC" {
		return fmt.Errorf("answer %.300q, want %s true STATIC", body, flaggen.StaticBoolKey)
	}
	return nil
}

// ofrepBulkValidate decodes the OFREP bulk answer: one entry per flag, no errors, and
// the two fixed flags as expected.
func ofrepBulkValidate(status int, body []byte, flagCount int) error {
	var got struct {
		Flags []struct {
			Key       string `json:"key"`
			Value     any    `json:"value"`
			Reason    string `json:"reason"`
			ErrorCode string `json:"errorCode"`
		} `json:"flags"`
	}
	if status != http.StatusOK {
		return fmt.Errorf("status %d: %.300q", status, body)
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("bulk answer: %w", err)
	}
	if len(got.Flags) != flagCount {
		return fmt.Errorf("bulk answer has %d flags, want %d", len(got.Flags), flagCount)
	}
	seen := 0
	for _, f := range got.Flags {
		if f.ErrorCode != "" {
			return fmt.Errorf("bulk answer: flag %s: %s", f.Key, f.ErrorCode)
		}
		switch f.Key {
		case flaggen.StaticBoolKey, flaggen.TargetingBoolKey:
			if f.Value != true {
				return fmt.Errorf("bulk answer: flag %s = %v, want true", f.Key, f.Value)
			}
			seen++
		}
	}
	if seen != 2 {
		return errors.New("bulk answer lacks the fixed flags")
	}
	return nil
}

// result is the outcome of one workload.
type result struct {
	name            string
	server          string // the server's label: flagpole, compare, floor
	round           int
	clients         int
	requests        int64 // correct answers within the measured window
	errors          int64
	firstError      string
	elapsed         time.Duration
	p50, p99, max   time.Duration
	maxRSS          int64
	serverCPU       time.Duration
	harnessCPU      time.Duration
	otherCPU        time.Duration // CPU time of everything else on the machine
	serverDiedEarly bool
}

// perRequest is the server CPU time per correct answer (0 without answers).
func (r result) perRequest() time.Duration {
	if r.requests <= 0 {
		return 0
	}
	return r.serverCPU / time.Duration(r.requests)
}

// reqPerSec is the throughput of correct answers.
func (r result) reqPerSec() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// runOptions configure runWorkload.
type runOptions struct {
	clients          int
	warmup, duration time.Duration
	maxPerClient     int
	flagCount        int
	timeout          time.Duration
}

// clientStats is what one client goroutine measured.
type clientStats struct {
	latencies  []time.Duration
	errors     int64
	firstError error
	end        time.Time
}

// runWorkload runs o.clients concurrent callers of one workload: a warm-up (not
// measured), then o.duration of measured requests. Each client stops at the deadline
// or after o.maxPerClient requests, whichever comes first.
func runWorkload(ctx context.Context, w workload, s *server, o runOptions) (result, error) {
	res := result{name: w.name, server: s.label, clients: o.clients}
	var shared *grpc.ClientConn
	if w.name == wlGRPCShared {
		t, err := evalTarget(s, transportPlain)
		if err != nil {
			return res, err
		}
		if shared, err = dialGRPC(t); err != nil {
			return res, err
		}
		defer shared.Close()
	}
	callers := make([]caller, 0, o.clients)
	defer func() {
		for _, c := range callers {
			c.close()
		}
	}()
	for range o.clients {
		c, err := newCaller(w, s, o.flagCount, o.timeout, shared)
		if err != nil {
			return res, err
		}
		callers = append(callers, c)
	}
	// Validate one full answer per client before anything is measured.
	for _, c := range callers {
		if err := c.call(ctx); err != nil {
			return res, fmt.Errorf("%s: first answer: %w", w.name, err)
		}
	}

	sampler := sampleRSS(s.pid, 50*time.Millisecond)
	warmEnd := time.Now().Add(o.warmup)
	var measureStart time.Time
	stats := make([]clientStats, o.clients)
	var ready, wg sync.WaitGroup
	start, measure := make(chan struct{}), make(chan struct{})
	ready.Add(o.clients)
	for i, c := range callers {
		wg.Go(func() {
			ready.Done()
			<-start
			// Warm-up: same loop, not recorded.
			for time.Now().Before(warmEnd) && ctx.Err() == nil {
				_ = c.call(ctx)
			}
			<-measure // measureStart is set before measure is closed
			stats[i] = measureClient(ctx, c, measureStart.Add(o.duration), o.maxPerClient)
		})
	}
	ready.Wait()
	close(start)
	time.Sleep(time.Until(warmEnd))
	srvCPU0, _ := cpuTime(s.pid)
	selfCPU0 := selfCPUTime()
	busy0, _ := systemBusy()
	measureStart = time.Now()
	close(measure)
	wg.Wait()
	busy1, _ := systemBusy()
	res.maxRSS = sampler.stop()
	srvCPU1, err := cpuTime(s.pid)
	if err != nil {
		res.serverDiedEarly = true
	}
	res.serverCPU = srvCPU1 - srvCPU0
	res.harnessCPU = selfCPUTime() - selfCPU0
	res.otherCPU = max(0, busy1-busy0-res.serverCPU-res.harnessCPU)
	res.addStats(stats, measureStart)
	if !s.alive() {
		res.serverDiedEarly = true
	}
	return res, nil
}

// measureClient is one client's measured loop: requests until the deadline or
// maxPerClient of them, each answer's latency recorded.
func measureClient(ctx context.Context, c caller, deadline time.Time, maxPerClient int) clientStats {
	st := clientStats{latencies: make([]time.Duration, 0, 1<<14)}
	t0 := time.Now()
	for n := 0; n < maxPerClient && ctx.Err() == nil; n++ {
		err := c.call(ctx)
		t1 := time.Now()
		if err != nil {
			st.errors++
			if st.firstError == nil {
				st.firstError = err
			}
		} else {
			st.latencies = append(st.latencies, t1.Sub(t0))
		}
		t0 = t1
		if !t1.Before(deadline) {
			break
		}
	}
	st.end = t0
	return st
}

// addStats merges what the clients measured into r: requests, errors, latency
// percentiles and the measured time, from measureStart to the last client's end.
func (r *result) addStats(stats []clientStats, measureStart time.Time) {
	var all []time.Duration
	var last time.Time
	for i := range stats {
		st := &stats[i]
		all = append(all, st.latencies...)
		r.errors += st.errors
		if st.firstError != nil && r.firstError == "" {
			r.firstError = st.firstError.Error()
		}
		if st.end.After(last) {
			last = st.end
		}
	}
	r.requests = int64(len(all))
	r.elapsed = last.Sub(measureStart)
	slices.Sort(all)
	r.p50, r.p99 = percentile(all, 0.50), percentile(all, 0.99)
	if len(all) > 0 {
		r.max = all[len(all)-1]
	}
}

// percentile returns the q-quantile (nearest rank) of sorted latencies.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
