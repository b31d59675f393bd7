package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
)

// attack is one replayed attack.
type attack struct {
	name   string
	what   string
	daemon daemonOptions
	run    func(ctx context.Context, e *env) (outcome, error)
}

// outcome is what an attack found; cleanup (optional) runs after the "after" figures,
// so resources the attack holds (connections) are still held then.
type outcome struct {
	note    string
	cleanup func()
}

// env is what an attack runs against.
type env struct {
	cfg     config
	d       *daemon
	peakGor string
}

// peak records the daemon's goroutines while the attack holds its resources.
func (e *env) peak() { e.peakGor = e.d.metric("go_goroutines") }

const resolveBoolean = "/flagd.evaluation.v1.Service/ResolveBoolean"

func attacks() []attack {
	return []attack{
		{name: "deep-json", what: "100 concurrent Connect JSON ResolveBoolean with a context nested 10,000 levels (20 KB), connections kept open", run: deepJSON},
		{name: "deep-proto", what: "100 concurrent Connect binary ResolveBoolean with a context nested 9,000 protobuf message levels", run: deepProto},
		{name: "sync-credentials", what: "an http source named with user:password@ and ?token=; FetchAllFlags, SyncFlags, GetMetadata, /metrics, /readyz and the log searched for the secrets", daemon: syncCredentialsDaemon(), run: syncCredentials},
		{name: "fd-exhaustion", what: "ulimit -n 40, 30 idle keep-alive connections, the flag file renamed over; connections closed; time until the new flags are served", daemon: daemonOptions{nofile: 40}, run: fdExhaustion},
		{name: "sync-cardinality", what: "short SyncFlags streams over 256 provider ids x 256 selectors; /metrics size, series and scrape time", run: syncCardinality},
		{name: "stream-refusals", what: "10,000 open EventStreams (h2c, 40 connections), then 20,000 more refused; WARN lines logged", run: streamRefusals},
		{name: "idle-conns", what: "19,800 idle keep-alive connections to the evaluation port, held; how many the daemon closed", run: idleConns},
		{name: "h2-half-streams", what: "40 h2c connections x 250 ResolveBoolean streams whose body never comes, held", run: h2HalfStreams},
		{name: "yaml-leak", what: "YAML flag files whose errors quote content (unknown anchor, !!int of a string); /readyz and the log searched for it", daemon: yamlDaemon(), run: yamlLeak},
		{name: "huge-file", what: "a 52.6 MB flag file renamed over the small one, served, then the small one back", run: hugeFile},
		{name: "eventstream-memory", what: "2,000 Connect EventStreams over HTTP/1.1 opened, held 5 s, closed", run: eventStreamMemory},
		{name: "resolveall-selectors", what: "20,000 gRPC ResolveAll calls, each with a distinct 1 KiB selector (each one used to stay cached until the next flag change)", run: resolveAllSelectors},
	}
}

func attackNames() []string {
	var out []string
	for _, a := range attacks() {
		out = append(out, a.name)
	}
	return out
}

func attackByName(name string) attack {
	for _, a := range attacks() {
		if a.name == name {
			return a
		}
	}
	panic("unknown attack " + name)
}

// parallelPosts sends the request on n new connections at once and keeps them open;
// it returns the connections and the count of each status (or error).
func parallelPosts(addr string, req []byte, n int, timeout time.Duration) ([]net.Conn, map[string]int) {
	var mu sync.Mutex
	statuses := map[string]int{}
	conns := make([]net.Conn, 0, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			status := "dial error"
			conn, err := net.DialTimeout("tcp", addr, timeout)
			if err == nil {
				_ = conn.SetDeadline(time.Now().Add(timeout))
				status = "error"
				if _, err = conn.Write(req); err == nil {
					var resp *http.Response
					if resp, err = http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						status = fmt.Sprint(resp.StatusCode)
					}
				}
				if err != nil {
					status = "error: " + shortErr(err)
				}
				_ = conn.SetDeadline(time.Time{})
			}
			mu.Lock()
			statuses[status]++
			if conn != nil {
				conns = append(conns, conn)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return conns, statuses
}

func closeAll(conns []net.Conn) func() {
	return func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

func fmtStatuses(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

func deepJSON(_ context.Context, e *env) (outcome, error) {
	const depth = 10000
	body := `{"flagKey":"new-checkout","context":{"x":` + strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth) + `}}`
	n := e.cfg.scaled(100, 1)
	conns, statuses := parallelPosts(e.d.eval, postRequest(e.d.eval, resolveBoolean, "application/json", []byte(body)), n, 60*time.Second)
	e.peak()
	return outcome{note: fmt.Sprintf("%d requests of %d bytes: %s", n, len(body), fmtStatuses(statuses)), cleanup: closeAll(conns)}, nil
}

// deepProtoRequest is a ResolveBooleanRequest whose context nests `levels` protobuf
// messages (Value, ListValue, Value, ...).
func deepProtoRequest(levels int) []byte {
	v := protowire.AppendTag(nil, 2, protowire.Fixed64Type) // Value.number_value
	v = protowire.AppendFixed64(v, math.Float64bits(1))
	for i := 0; i+2 <= levels; i += 2 {
		lv := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), v) // ListValue.values
		v = protowire.AppendBytes(protowire.AppendTag(nil, 6, protowire.BytesType), lv)  // Value.list_value
	}
	entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "x")
	entry = protowire.AppendBytes(protowire.AppendTag(entry, 2, protowire.BytesType), v)
	st := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), entry) // Struct.fields
	req := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "new-checkout")
	return protowire.AppendBytes(protowire.AppendTag(req, 2, protowire.BytesType), st)
}

func deepProto(_ context.Context, e *env) (outcome, error) {
	body := deepProtoRequest(9000)
	n := e.cfg.scaled(100, 1)
	conns, statuses := parallelPosts(e.d.eval, postRequest(e.d.eval, resolveBoolean, "application/proto", body), n, 60*time.Second)
	e.peak()
	return outcome{note: fmt.Sprintf("%d requests of %d bytes: %s", n, len(body), fmtStatuses(statuses)), cleanup: closeAll(conns)}, nil
}

// Secrets of the sync-credentials attack.
const (
	secretPassword = "PASSWORD-7d3f"
	secretToken    = "TOKEN-9c1e"
)

func syncCredentialsDaemon() daemonOptions {
	return daemonOptions{setup: func(d *daemon) error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"flags":{"remote-flag":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}`)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		d.extra = append(d.extra, func() { _ = srv.Close() })
		d.extraURIs = append(d.extraURIs, fmt.Sprintf("http://probe:%s@%s/flags.json?token=%s&env=prod", secretPassword, ln.Addr(), secretToken))
		return nil
	}}
}

func syncCredentials(ctx context.Context, e *env) (outcome, error) {
	conn, err := grpc.NewClient(e.d.sync, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return outcome{}, err
	}
	defer conn.Close()
	client := syncv1grpc.NewFlagSyncServiceClient(conn)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var leaks []string
	check := func(where, text string) {
		if strings.Contains(text, secretPassword) || strings.Contains(text, secretToken) {
			leaks = append(leaks, where)
		}
	}
	all, err := client.FetchAllFlags(cctx, &syncv1.FetchAllFlagsRequest{})
	if err != nil {
		return outcome{}, fmt.Errorf("FetchAllFlags: %w", err)
	}
	check("FetchAllFlags", all.GetFlagConfiguration())
	stream, err := client.SyncFlags(cctx, &syncv1.SyncFlagsRequest{ProviderId: "hostile"})
	if err != nil {
		return outcome{}, fmt.Errorf("SyncFlags: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return outcome{}, fmt.Errorf("SyncFlags: %w", err)
	}
	check("SyncFlags", first.GetFlagConfiguration()+first.GetSyncContext().String())
	if md, err := client.GetMetadata(cctx, &syncv1.GetMetadataRequest{}); err == nil { // deprecated but served
		check("GetMetadata", md.String())
	}
	var metrics strings.Builder
	_ = scrape(e.d.mgmt, 10*time.Second, func(line string) bool { metrics.WriteString(line + "\n"); return true })
	check("/metrics", metrics.String())
	_, ready, _ := httpGet(e.d.mgmt, "/readyz", 5*time.Second)
	check("/readyz", string(ready))
	check("log", e.d.log.tail(64<<20))
	e.peak()
	example := regexp.MustCompile(`"source":"http[^"]*"`).FindString(all.GetFlagConfiguration())
	if len(leaks) == 0 {
		return outcome{note: "no secret anywhere; the sync API names the source " + example}, nil
	}
	return outcome{note: "secrets found in: " + strings.Join(leaks, ", ") + "; e.g. " + example}, nil
}

func fdExhaustion(ctx context.Context, e *env) (outcome, error) {
	n := 30
	var conns []net.Conn
	refused := 0
	req := postRequest(e.d.eval, resolveBoolean, "application/json", []byte(`{"flagKey":"new-checkout"}`))
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	for range n {
		conn, err := dialer.DialContext(ctx, "tcp", e.d.eval)
		if err != nil {
			refused++
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		ok := false
		if _, err := conn.Write(req); err == nil {
			if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok = resp.StatusCode == http.StatusOK
			}
		}
		_ = conn.SetDeadline(time.Time{})
		if !ok {
			refused++
			conn.Close()
			continue
		}
		conns = append(conns, conn)
	}
	mgmtStatus, mgmtBody, mgmtErr := httpGet(e.d.mgmt, "/readyz", 3*time.Second)
	ofrepStatus, _, ofrepErr := httpDo(e.d.ofrep, string(postRequest(e.d.ofrep, "/ofrep/v1/evaluate/flags/new-checkout", "application/json", []byte(`{}`))), 3*time.Second)
	e.peak()
	// new-checkout becomes true for everyone
	changed := strings.Replace(exampleFlags, `"on","off"]}`, `"on","on"]}`, 1)
	if changed == exampleFlags {
		return outcome{}, fmt.Errorf("fd-exhaustion: the flag change did not apply to the example flags")
	}
	if err := e.d.replaceFlags([]byte(changed)); err != nil {
		return outcome{}, err
	}
	time.Sleep(2 * time.Second)
	closeAll(conns)()
	closed := time.Now()
	served := time.Duration(-1)
	probe := string(postRequest(e.d.eval, resolveBoolean, "application/json", []byte(`{"flagKey":"new-checkout"}`)))
	for time.Since(closed) < 40*time.Second && ctx.Err() == nil {
		if status, body, err := httpDo(e.d.eval, probe, 2*time.Second); err == nil && status == 200 && bytes.Contains(body, []byte(`"value":true`)) {
			served = time.Since(closed)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	_, readyAfter, _ := httpGet(e.d.mgmt, "/readyz", 3*time.Second)
	during := func(status int, err error) string {
		if err != nil {
			return shortErr(err)
		}
		return fmt.Sprint(status)
	}
	note := fmt.Sprintf("%d idle connections held (%d refused); while held: /readyz %s %.120s, OFREP %s; ",
		len(conns), refused, during(mgmtStatus, mgmtErr), bytes.TrimSpace(mgmtBody), during(ofrepStatus, ofrepErr))
	if served < 0 {
		note += "new flags NOT served 40 s after the connections closed"
	} else {
		note += fmt.Sprintf("new flags served %v after the connections closed", served.Round(10*time.Millisecond))
	}
	return outcome{note: note + fmt.Sprintf("; /readyz then: %.200s", bytes.TrimSpace(readyAfter))}, nil
}

func syncCardinality(ctx context.Context, e *env) (outcome, error) {
	providers, selectors := e.cfg.scaled(256, 2), e.cfg.scaled(256, 2)
	conn, err := grpc.NewClient(e.d.sync, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return outcome{}, err
	}
	defer conn.Close()
	client := syncv1grpc.NewFlagSyncServiceClient(conn)
	start := time.Now()
	failed := inParallel(providers*selectors, func(j int) error {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		sctx = metadata.AppendToOutgoingContext(sctx, "flagd-selector", fmt.Sprintf("flagSetId=set-%d", j%selectors))
		stream, err := client.SyncFlags(sctx, &syncv1.SyncFlagsRequest{ProviderId: fmt.Sprintf("provider-%d", j/selectors)})
		if err == nil {
			_, err = stream.Recv()
		}
		return err
	})
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	e.peak()
	var size int64
	var series int
	t0 := time.Now()
	err = scrape(e.d.mgmt, 2*time.Minute, func(line string) bool {
		size += int64(len(line) + 1)
		if strings.HasPrefix(line, "feature_flag_flagd_sync") {
			series++
		}
		return true
	})
	if err != nil {
		return outcome{}, fmt.Errorf("scrape: %w", err)
	}
	return outcome{note: fmt.Sprintf("%d streams in %v (%d failed); /metrics %.1f MiB, %d sync series, scrape %v",
		providers*selectors, took.Round(time.Second), failed, float64(size)/(1<<20), series, time.Since(t0).Round(time.Millisecond))}, nil
}

// eventStreamHeaders open a Connect server stream of EventStream.
var eventStreamHeaders = [][2]string{{"content-type", "application/connect+json"}, {"connect-protocol-version", "1"}}

func streamRefusals(_ context.Context, e *env) (outcome, error) {
	const open = 10000 // the daemon's limit of open EventStreams
	const perConn = 250
	extra := e.cfg.scaled(20000, 10)
	path := "/flagd.evaluation.v1.Service/EventStream"
	body := connectEnvelope([]byte("{}"))
	var conns []*h2conn
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	for i := 0; i < open; i += perConn {
		c, err := dialH2(e.d.eval)
		if err != nil {
			return outcome{}, err
		}
		conns = append(conns, c)
		for j := 0; j < perConn && i+j < open; j++ {
			if err := c.open(e.d.eval, path, eventStreamHeaders, body); err != nil {
				return outcome{}, fmt.Errorf("opening stream %d: %w", i+j, err)
			}
		}
	}
	time.Sleep(2 * time.Second)
	endedEarly := waitEnded(conns, 0, 0)
	e.peak()
	mark := e.d.log.mark()
	// refused streams end at once, so each batch frees its connection's slots
	r, err := dialH2(e.d.eval)
	if err != nil {
		return outcome{}, err
	}
	conns = append(conns, r)
	sent := 0
	start := time.Now()
	for sent < extra {
		batch := min(perConn, extra-sent)
		for range batch {
			if err := r.open(e.d.eval, path, eventStreamHeaders, body); err != nil {
				return outcome{}, fmt.Errorf("refused batch: %w", err)
			}
		}
		sent += batch
		if waitEnded([]*h2conn{r}, int64(sent), 30*time.Second) < int64(sent) {
			break
		}
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	log := e.d.log.since(mark)
	warns := countLines(log, `"level":"warn"`)
	return outcome{note: fmt.Sprintf("%d streams opened (%d ended early); %d more sent in %v, %s ended by the server; %d WARN lines (%d bytes of log) meanwhile",
		open, endedEarly, sent, took.Round(time.Millisecond), fmtCount(r.ended.Load(), sent), warns, len(log))}, nil
}

func idleConns(ctx context.Context, e *env) (outcome, error) {
	n := e.cfg.scaled(19800, 10)
	req := postRequest(e.d.eval, resolveBoolean, "application/json", []byte(`{"flagKey":"static-bool"}`))
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var refused atomic.Int64
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	for range 64 {
		wg.Go(func() {
			for range jobs {
				conn, err := dialer.DialContext(ctx, "tcp", e.d.eval)
				if err != nil {
					refused.Add(1)
					continue
				}
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				ok := false
				if _, err := conn.Write(req); err == nil {
					if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						ok = resp.StatusCode == http.StatusOK
					}
				}
				_ = conn.SetDeadline(time.Time{})
				if !ok {
					refused.Add(1)
					conn.Close()
					continue
				}
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}
		})
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	e.peak()
	held := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(e.cfg.hold):
	}
	closedByServer := 0
	buf := make([]byte, 1)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(buf); err != nil {
			if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
				closedByServer++
			}
		}
	}
	return outcome{note: fmt.Sprintf("%d idle connections opened (%d refused); after %v held: %d closed by the daemon",
		len(conns), refused.Load(), time.Since(held).Round(time.Second), closedByServer), cleanup: closeAll(conns)}, nil
}

func h2HalfStreams(ctx context.Context, e *env) (outcome, error) {
	nConns, perConn := e.cfg.scaled(40, 1), 250
	headers := [][2]string{{"content-type", "application/json"}, {"content-length", "100"}}
	var conns []*h2conn
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	for range nConns {
		c, err := dialH2(e.d.eval)
		if err != nil {
			return outcome{}, err
		}
		conns = append(conns, c)
		for range perConn {
			if err := c.open(e.d.eval, resolveBoolean, headers, nil); err != nil {
				break
			}
		}
	}
	time.Sleep(time.Second)
	e.peak()
	start := time.Now()
	total := nConns * perConn
	firstAll := time.Duration(-1)
	for time.Since(start) < e.cfg.hold && ctx.Err() == nil {
		if waitEnded(conns, int64(total), 0) >= int64(total) && firstAll < 0 {
			firstAll = time.Since(start) + time.Second
		}
		time.Sleep(100 * time.Millisecond)
	}
	ended := waitEnded(conns, 0, 0)
	var resets int64
	closed := 0
	for _, c := range conns {
		resets += c.resets.Load()
		if c.isClosed() {
			closed++
		}
	}
	note := fmt.Sprintf("%d half-sent streams; within %v the daemon ended %s (%d by RST_STREAM) and closed %d of %d connections",
		total, e.cfg.hold+time.Second, fmtCount(ended, total), resets, closed, nConns)
	if firstAll >= 0 {
		note += fmt.Sprintf("; all ended after %v", firstAll.Round(100*time.Millisecond))
	}
	return outcome{note: note}, nil
}

// Content of the yaml-leak attack's files: each error quotes a secret.
const (
	yamlSecretAnchor = "TOPSECRET_ANCHOR_42"
	yamlSecretInt    = "SECRET_INT_99" //nolint:gosec // G101: a canary the attack checks never leaks, not a credential
)

func yamlDaemon() daemonOptions {
	return daemonOptions{fileName: "flags.yaml", noReady: true,
		flagsFile: []byte("flags:\n  leak:\n    state: ENABLED\n    variants: *" + yamlSecretAnchor + "\n    defaultVariant: on\n")}
}

func yamlLeak(_ context.Context, e *env) (outcome, error) {
	var found []string
	check := func(round, secret string) {
		time.Sleep(1500 * time.Millisecond)
		_, body, _ := httpGet(e.d.mgmt, "/readyz", 3*time.Second)
		if strings.Contains(string(body), secret) {
			found = append(found, round+": /readyz")
		}
		if strings.Contains(e.d.log.tail(1<<20), secret) {
			found = append(found, round+": log")
		}
	}
	check("unknown anchor", yamlSecretAnchor)
	if err := e.d.replaceFlags([]byte("flags:\n  leak:\n    state: ENABLED\n    variants: {on: !!int " + yamlSecretInt + "}\n    defaultVariant: on\n")); err != nil {
		return outcome{}, err
	}
	check("!!int", yamlSecretInt)
	e.peak()
	_, body, _ := httpGet(e.d.mgmt, "/readyz", 3*time.Second)
	note := "no file content in /readyz or the log"
	if len(found) > 0 {
		note = "file content found in " + strings.Join(found, ", ")
	}
	return outcome{note: fmt.Sprintf("%s; /readyz: %.240s", note, bytes.TrimSpace(body))}, nil
}

func hugeFile(ctx context.Context, e *env) (outcome, error) {
	target := int(52.6 * float64(1<<20) * e.cfg.scale / 1.048576) // 52.6 MB at scale 1
	n := max(target/180, flaggen.MinFlags+1)
	doc, err := flaggen.Generate(n)
	if err != nil {
		return outcome{}, err
	}
	for len(doc) < target {
		n = n * (target + target/50) / len(doc)
		if doc, err = flaggen.Generate(n); err != nil {
			return outcome{}, err
		}
	}
	marker := string(postRequest(e.d.eval, resolveBoolean, "application/json", []byte(`{"flagKey":"flag-`+strings.Repeat("0", max(4, len(fmt.Sprint(n-flaggen.MinFlags))))+`-bool"}`)))
	served := func() (bool, error) {
		status, _, err := httpDo(e.d.eval, marker, 10*time.Second)
		return status == http.StatusOK, err
	}
	start := time.Now()
	if err := e.d.replaceFlags(doc); err != nil {
		return outcome{}, err
	}
	for {
		if ok, _ := served(); ok {
			break
		}
		if time.Since(start) > 3*time.Minute || ctx.Err() != nil {
			return outcome{}, fmt.Errorf("the huge file was not served within 3 min: %s", e.d.log.tail(2048))
		}
		time.Sleep(50 * time.Millisecond)
	}
	loaded := time.Since(start)
	time.Sleep(e.cfg.settle)
	rssHolding, _ := rss(e.d.pid)
	heap, live := e.d.metric("go_memstats_heap_inuse_bytes"), e.d.metric("go_memstats_alloc_bytes")
	e.peak()
	if err := e.d.replaceFlags([]byte(exampleFlags)); err != nil {
		return outcome{}, err
	}
	for {
		if ok, err := served(); !ok && err == nil {
			break
		}
		if time.Since(start) > 5*time.Minute || ctx.Err() != nil {
			return outcome{}, fmt.Errorf("the small file was not served again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	liveRatio := "?"
	var liveBytes float64
	if _, err := fmt.Sscan(live, &liveBytes); err == nil {
		liveRatio = fmt.Sprintf("%.1f", liveBytes/float64(len(doc)))
	}
	return outcome{note: fmt.Sprintf("%.1f MB file, %d flags, served after %v; %v later: RSS %s, heap in use %s MiB, allocated (live after the daemon's collection) %s MiB = %s× the file; \"after\" is %v after the small file is back",
		float64(len(doc))/1e6, n, loaded.Round(time.Millisecond), e.cfg.settle, mib(rssHolding), mibString(heap), mibString(live), liveRatio, e.cfg.settle)}, nil
}

func mibString(bytesValue string) string {
	var f float64
	if _, err := fmt.Sscan(bytesValue, &f); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f", f/(1<<20))
}

func eventStreamMemory(ctx context.Context, e *env) (outcome, error) {
	n := e.cfg.scaled(2000, 2)
	req := postRequest(e.d.eval, "/flagd.evaluation.v1.Service/EventStream", "application/connect+json",
		connectEnvelope([]byte("{}")), "Connect-Protocol-Version: 1")
	conns, statuses := parallelStreams(e.d.eval, req, n)
	defer func() { closeAll(conns)() }() // what is still open when the attack ends early
	time.Sleep(min(5*time.Second, e.cfg.hold))
	rssOpen, _ := rss(e.d.pid)
	e.peak()
	closeAll(conns)()
	conns = nil
	start := time.Now()
	for time.Since(start) < 10*time.Second && ctx.Err() == nil {
		if g, err := strconv.Atoi(e.d.metric("go_goroutines")); err == nil && g < 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rssClosed, _ := rss(e.d.pid)
	return outcome{note: fmt.Sprintf("%d streams (%s); RSS with them open %s, %s once their goroutines ended (%v after closing)",
		n, fmtStatuses(statuses), mib(rssOpen), mib(rssClosed), time.Since(start).Round(100*time.Millisecond))}, nil
}

// parallelStreams opens n Connect streams on their own connections and reads each
// response's headers and first message.
func parallelStreams(addr string, req []byte, n int) ([]net.Conn, map[string]int) {
	var mu sync.Mutex
	statuses := map[string]int{}
	var conns []net.Conn
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range jobs {
				status := "dial error"
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err == nil {
					status = openStream(conn, req)
				}
				mu.Lock()
				statuses[status]++
				if conn != nil {
					conns = append(conns, conn)
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return conns, statuses
}

func openStream(conn net.Conn, req []byte) string {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	if _, err := conn.Write(req); err != nil {
		return "error: " + shortErr(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil) //nolint:bodyclose // the stream stays open: the attack holds it, and closeAll closes the connection
	if err != nil {
		return "error: " + shortErr(err)
	}
	head := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		return fmt.Sprintf("%d, no message", resp.StatusCode)
	}
	return fmt.Sprint(resp.StatusCode)
}
