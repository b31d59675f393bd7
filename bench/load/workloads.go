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

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
)

// Workload names, in the order they run by default.
const (
	wlConnectStatic    = "connect-static"
	wlConnectTargeting = "connect-targeting"
	wlGRPCStatic       = "grpc-static"
	wlGRPCShared       = "grpc-static-1conn"
	wlOFREPSingle      = "ofrep-single"
	wlOFREPBulk        = "ofrep-bulk"
)

// allWorkloads lists every workload name in run order.
func allWorkloads() []string {
	return []string{wlConnectStatic, wlConnectTargeting, wlGRPCStatic, wlGRPCShared, wlOFREPSingle, wlOFREPBulk}
}

// workloadDescription says what a workload sends, for the report.
func workloadDescription(name string) string {
	switch name {
	case wlConnectStatic:
		return "POST /flagd.evaluation.v1.Service/ResolveBoolean, Connect JSON over HTTP/1.1, `" + connectStaticBody + "`"
	case wlConnectTargeting:
		return "the same with `" + connectTargetingBody + "` (an `if`/`ends_with` rule)"
	case wlGRPCStatic:
		return "flagd.evaluation.v1 ResolveBoolean over gRPC (connect-go client, `connect.WithGRPC()`, h2c, one HTTP/2 connection per client), static flag, empty context"
	case wlGRPCShared:
		return "the same, but every client shares one HTTP/2 connection (one provider, concurrent evaluations)"
	case wlOFREPSingle:
		return "POST /ofrep/v1/evaluate/flags/" + flaggen.StaticBoolKey + " over HTTP/1.1, `" + ofrepSingleBody + "`"
	case wlOFREPBulk:
		return "POST /ofrep/v1/evaluate/flags (every flag), `" + ofrepBulkBody + "`, no If-None-Match (full evaluation each time)"
	}
	return ""
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

// newCaller returns a caller of the named workload against s. Its first call validates
// the answer fully (decoding it); later calls check it cheaply.
func newCaller(name string, s *server, flagCount int, timeout time.Duration, shared *http.Transport) (caller, error) {
	switch name {
	case wlConnectStatic:
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
	case wlOFREPBulk:
		c := &httpCaller{conn: newRawConn(s.ofrep, timeout),
			req: rawRequest(s.ofrep, "/ofrep/v1/evaluate/flags", ofrepBulkBody)}
		c.validate = func(status int, body, etag []byte) error {
			if err := ofrepBulkValidate(status, body, flagCount); err != nil {
				return err
			}
			if len(etag) == 0 {
				return errors.New("bulk answer without ETag")
			}
			c.firstETag, c.firstLen = slices.Clone(etag), len(body)
			return nil
		}
		// The same context gives the same answer: same ETag, same length.
		c.check = func(status int, body, etag []byte) bool {
			return status == http.StatusOK && len(body) == c.firstLen && bytes.Equal(etag, c.firstETag)
		}
		return c, nil
	case wlGRPCStatic:
		return newGRPCCaller(s.eval, timeout, newH2CTransport(timeout), true), nil
	case wlGRPCShared:
		return newGRPCCaller(s.eval, timeout, shared, false), nil
	}
	return nil, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(allWorkloads(), ", "))
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

// grpcCaller calls ResolveBoolean over gRPC with a connect-go client over h2c.
type grpcCaller struct {
	transport *http.Transport
	owned     bool // the caller closes the transport
	client    evaluationv1connect.ServiceClient
	req       *connect.Request[evalv1.ResolveBooleanRequest]
}

// newH2CTransport returns an HTTP/2 cleartext (prior knowledge) transport; it keeps one
// connection per host and multiplexes concurrent requests over it.
func newH2CTransport(timeout time.Duration) *http.Transport {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &protocols, MaxIdleConnsPerHost: 1, ResponseHeaderTimeout: timeout}
}

// newGRPCCaller returns a gRPC caller for the evaluation listener at addr over tr;
// owned says whether closing the caller closes tr's connections.
func newGRPCCaller(addr string, timeout time.Duration, tr *http.Transport, owned bool) *grpcCaller {
	client := evaluationv1connect.NewServiceClient(&http.Client{Transport: tr, Timeout: timeout},
		"http://"+addr, connect.WithGRPC())
	req := connect.NewRequest(&evalv1.ResolveBooleanRequest{FlagKey: flaggen.StaticBoolKey, Context: &structpb.Struct{}})
	return &grpcCaller{transport: tr, owned: owned, client: client, req: req}
}

// call sends one ResolveBoolean and checks value, reason and variant.
func (c *grpcCaller) call(ctx context.Context) error {
	resp, err := c.client.ResolveBoolean(ctx, c.req)
	if err != nil {
		return err
	}
	if !resp.Msg.GetValue() || resp.Msg.GetReason() != "STATIC" || resp.Msg.GetVariant() != "on" {
		return fmt.Errorf("wrong answer %v", resp.Msg)
	}
	return nil
}

// close closes the caller's own connection (not a shared one).
func (c *grpcCaller) close() {
	if c.owned {
		c.transport.CloseIdleConnections()
	}
}

// result is the outcome of one workload.
type result struct {
	name            string
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
func runWorkload(ctx context.Context, name string, s *server, o runOptions) (result, error) {
	res := result{name: name, clients: o.clients}
	callers := make([]caller, o.clients)
	shared := newH2CTransport(o.timeout)
	defer shared.CloseIdleConnections()
	for i := range callers {
		c, err := newCaller(name, s, o.flagCount, o.timeout, shared)
		if err != nil {
			return res, err
		}
		callers[i] = c
	}
	defer func() {
		for _, c := range callers {
			c.close()
		}
	}()
	// Validate one full answer per client before anything is measured.
	for _, c := range callers {
		if err := c.call(ctx); err != nil {
			return res, fmt.Errorf("%s: first answer: %w", name, err)
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
			st := &stats[i]
			ready.Done()
			<-start
			// Warm-up: same loop, not recorded.
			for time.Now().Before(warmEnd) && ctx.Err() == nil {
				_ = c.call(ctx)
			}
			<-measure // measureStart is set before measure is closed
			deadline := measureStart.Add(o.duration)
			st.latencies = make([]time.Duration, 0, 1<<14)
			t0 := time.Now()
			for n := 0; n < o.maxPerClient && ctx.Err() == nil; n++ {
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

	var all []time.Duration
	var last time.Time
	for i := range stats {
		st := &stats[i]
		all = append(all, st.latencies...)
		res.errors += st.errors
		if st.firstError != nil && res.firstError == "" {
			res.firstError = st.firstError.Error()
		}
		if st.end.After(last) {
			last = st.end
		}
	}
	res.requests = int64(len(all))
	res.elapsed = last.Sub(measureStart)
	slices.Sort(all)
	res.p50, res.p99 = percentile(all, 0.50), percentile(all, 0.99)
	if len(all) > 0 {
		res.max = all[len(all)-1]
	}
	if !s.alive() {
		res.serverDiedEarly = true
	}
	return res, nil
}

// percentile returns the q-quantile (nearest rank) of sorted latencies.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
