package evaluation

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
)

// The pooled-buffer tests evaluate the flag "echo", whose variant is named after
// the caller's context: targeting {"cat": [targetingKey, "|", email]}. Context i
// carries targetingKey tk-<i> and email u<i>@example.com, and variant
// "tk-<i>|u<i>@example.com" exists for every i, so an answer names the context it
// was computed from; a context mixing two requests names no variant (an error), and
// a context swapped with another request's names the other variant. Even variants
// are long (over compressMinBytes), so their answers are gzipped for clients that
// accept it.

func echoTK(i int) string      { return fmt.Sprintf("tk-%05d", i) }
func echoEmail(i int) string   { return fmt.Sprintf("u%05d@example.com", i) }
func echoVariant(i int) string { return echoTK(i) + "|" + echoEmail(i) }

func echoValue(i int) string {
	if i%2 == 0 {
		return strings.Repeat(echoVariant(i)+";", 40)
	}
	return echoVariant(i)
}

// echoStore serves the echo flag with a variant for each of n contexts.
func echoStore(t testing.TB, n int) *store.Store {
	t.Helper()
	variants := map[string]any{"none": "none"}
	for i := range n {
		variants[echoVariant(i)] = echoValue(i)
	}
	doc, err := json.Marshal(map[string]any{"flags": map[string]any{"echo": map[string]any{
		"state": "ENABLED", "variants": variants, "defaultVariant": "none",
		"targeting": map[string]any{"cat": []any{map[string]any{"var": "targetingKey"}, "|", map[string]any{"var": "email"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return storeOf(t, "echo", doc)
}

// echoMarker finds every context marker in a response; a response of request i
// may only name i.
var echoMarker = regexp.MustCompile(`tk-(\d{5})|u(\d{5})@example\.com`)

// foreignMarkers lists the markers in text that are not request i's.
func foreignMarkers(text string, i int) []string {
	var out []string
	for _, m := range echoMarker.FindAllStringSubmatch(text, -1) {
		n := m[1] + m[2]
		if got, _ := strconv.Atoi(n); got != i {
			out = append(out, m[0])
		}
	}
	return out
}

// escapeDigits writes s's digits as \u escapes (decoded through the parser's
// scratch buffer).
func escapeDigits(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			fmt.Fprintf(&b, `\u%04x`, c)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// echoBody is request i's JSON body: the two markers around a pad of the request's
// own markers (escaped as \u00e9 runs when escaped), sized so that the whole body
// has size bytes when it can (ASCII pads), followed by tail ("}" for a valid body).
func echoBody(i, size int, escaped bool, tail string) string {
	tk, email := echoTK(i), echoEmail(i)
	if escaped {
		tk, email = escapeDigits(tk), escapeDigits(email)
	}
	head := `{"flagKey":"echo","context":{"targetingKey":"` + tk + `","pad":"`
	rest := `","email":"` + email + `"}` + tail
	n := max(size-len(head)-len(rest), 0)
	var pad string
	if escaped {
		pad = strings.Repeat(`\u00e9`, n/6)
	} else {
		pad = strings.Repeat(echoVariant(i)+";", n/len(echoVariant(i))+1)[:n]
	}
	return head + pad + rest
}

// echoResolve is request i as a gRPC ResolveString message, its context padded to
// about size bytes with the request's own markers; broken appends a field whose
// length runs past the end (the fast decoder gives up after the context, and
// protobuf-go refuses it).
func echoResolve(t testing.TB, i, size int, broken bool) []byte {
	t.Helper()
	pad := strings.Repeat(echoVariant(i)+";", size/len(echoVariant(i))+1)[:size]
	b := encodeResolve(t, "echo", map[string]any{"targetingKey": echoTK(i), "pad": pad, "email": echoEmail(i)})
	if broken {
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendVarint(b, 100)
		b = append(b, "tk-"...)
	}
	return b
}

// echoKind is one shape of request the concurrent test sends.
type echoKind struct {
	name string
	ok   bool // the answer is request i's variant; otherwise an error answer
	// http: the Connect JSON body (size, escaped, tail), the client and the API
	size    int
	escaped bool
	tail    string
	h2      bool
	chunked bool
	api     api
	abort   bool // a raw HTTP/1.1 upload cut off halfway
	// grpc: a ResolveString message with a context of about size bytes
	grpc   bool
	broken bool
}

func echoKinds() []echoKind {
	return []echoKind{
		{name: "small h1", ok: true, size: 200, tail: "}", api: apiV1},
		{name: "small h2c", ok: true, size: 200, tail: "}", h2: true, api: apiV2},
		{name: "just under the pooling threshold", ok: true, size: maxPooledBody - 1, tail: "}", api: apiSchemaV1},
		{name: "at the pooling threshold", ok: true, size: maxPooledBody, tail: "}", h2: true, api: apiV1},
		{name: "just over the pooling threshold", ok: true, size: maxPooledBody + 1, tail: "}", api: apiV2},
		{name: "large chunked", ok: true, size: 200 << 10, tail: "}", h2: true, chunked: true, api: apiV1},
		{name: "escaped (scratch)", ok: true, size: 30 << 10, escaped: true, tail: "}", api: apiV2},
		{name: "escaped, scratch over the threshold", ok: true, size: 240 << 10, escaped: true, tail: "}", h2: true, api: apiSchemaV1},
		{name: "fails after the context: trailing comma", size: 20 << 10, tail: ",}", api: apiV1},
		{name: "fails after the context: duplicate key", size: 40 << 10, escaped: true, tail: `,"context":{}}`, h2: true, api: apiV2},
		{name: "fails reading: over the body limit, chunked", size: 320 << 10, tail: "}", chunked: true, api: apiV1},
		{name: "fails reading: upload cut off", size: 30 << 10, tail: "}", abort: true, api: apiV2},
		{name: "grpc small", ok: true, grpc: true, size: 100, api: apiV2},
		{name: "grpc one frame", ok: true, grpc: true, size: 8 << 10, api: apiV2},
		{name: "grpc near the threshold", ok: true, grpc: true, size: 60 << 10, api: apiV1},
		{name: "grpc large", ok: true, grpc: true, size: 200 << 10, api: apiSchemaV1},
		{name: "grpc fails after the context", grpc: true, size: 20 << 10, broken: true, api: apiV2},
		{name: "grpc over the message limit", grpc: true, size: 320 << 10, api: apiV1},
	}
}

// echoAnswer is what a client saw of one request.
type echoAnswer struct {
	ok      bool   // a successful evaluation
	value   string // of a successful evaluation
	variant string
	text    string // the whole answer (decompressed body, or status message), for markers
}

// TestPooledBuffersKeepRequestsApart is the attack on the fast path's pooled
// request buffers (and on grpc-go's pooled message buffers): 8 clients send 432
// concurrent requests, each with its own evaluation context, over the real
// listener (HTTP/1.1 and h2c Connect JSON on the fast path, gRPC served by grpc-go),
// with bodies around the 64 KiB pooling threshold, escaped strings decoded through
// the scratch buffer, gzipped answers, and requests that fail after their context
// was decoded or while their body was read (handed to connect-go with the bytes
// already read, or cut off). Every answer must be computed from its own request's
// context and name no other request's; then every buffer the pool holds must be
// wiped (no byte of any request left in it).
func TestPooledBuffersKeepRequestsApart(t *testing.T) {
	const rounds, limit = 24, 300_000
	kinds := echoKinds()
	n := rounds * len(kinds)
	svc := newService(withDefaults(t, Options{Store: echoStore(t, n), MaxRequestBody: limit}), true)
	var created atomic.Int64
	newBufs := svc.fastBufs.New
	svc.fastBufs.New = func() any { created.Add(1); return newBufs() }
	var mu sync.Mutex
	decisions := map[string]int{}
	svc.observe = func(why string) {
		mu.Lock()
		defer mu.Unlock()
		decisions[why]++
	}
	// grpc-go reads messages into buffers of a pool that scribbles over every
	// buffer returned to it, as a concurrent request reusing it at once would
	cfg := server.ListenConfig{Name: "evaluation", ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second}
	var scribbled atomic.Int64
	cfg.GRPC = svc.GRPCServer(append(server.GRPCServerOptions(cfg), experimental.BufferPool(scribblingPool{mem.DefaultBufferPool(), &scribbled}))...)
	srv := serveWith(t, svc, cfg, false)
	c := &echoClients{kinds: kinds, srv: srv, h1: h1Client(t), h2: h2cClient(t)}
	conn, err := grpc.NewClient(srv.ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c.conn = conn

	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				c.send(t, i)
			}
		})
	}
	for _, i := range rand.New(rand.NewPCG(17, 1)).Perm(n) {
		work <- i
	}
	close(work)
	wg.Wait()

	// the attack went where it was meant to: the fast path answered, requests were
	// handed to connect-go after a failed decode and after a failed read, and
	// grpc-go read messages into pooled buffers
	mu.Lock()
	for _, why := range []string{"", "body not decoded by the fast path", "reading the body failed"} {
		if decisions[why] == 0 {
			t.Errorf("no request took the %q branch of the fast path (decisions: %v)", why, decisions)
		}
	}
	t.Logf("fast path decisions: %v; %d gRPC message buffers scribbled over after use", decisions, scribbled.Load())
	mu.Unlock()
	if scribbled.Load() == 0 {
		t.Error("grpc-go returned no message buffer to the pool: the gRPC requests did not use pooled buffers")
	}

	// every buffer back in the pool is wiped (a GC may empty the pool: then refill
	// it with a few requests and look again)
	for attempt := 0; ; attempt++ {
		if inspectPool(t, svc, &created) > 0 {
			break
		}
		if attempt == 5 {
			t.Error("no buffer was left in the pool to inspect")
			break
		}
		for i := range 16 {
			c.send(t, i)
		}
	}
}

// echoClients send the requests of the concurrent test.
type echoClients struct {
	kinds  []echoKind
	srv    *testServer
	h1, h2 *http.Client
	conn   *grpc.ClientConn
}

// send sends request i (of kind i mod len(kinds)) and checks its answer.
func (c *echoClients) send(t *testing.T, i int) {
	t.Helper()
	k := c.kinds[i%len(c.kinds)]
	var got echoAnswer
	var err error
	switch {
	case k.grpc:
		got, err = grpcEcho(t, c.conn, k, i)
	case k.abort:
		if err := abortedUpload(c.srv.ln.Addr().String(), procPath(k.api, "string"), echoBody(i, k.size, k.escaped, k.tail)); err != nil {
			t.Errorf("%s #%d: %v", k.name, i, err)
		}
		return
	default:
		hc := c.h1
		if k.h2 {
			hc = c.h2
		}
		got, err = httpEcho(hc, c.srv.url+procPath(k.api, "string"), echoBody(i, k.size, k.escaped, k.tail), k.chunked)
	}
	if err != nil {
		t.Errorf("%s #%d: %v", k.name, i, err)
		return
	}
	if foreign := foreignMarkers(got.text, i); len(foreign) > 0 {
		t.Errorf("%s #%d: the answer names other requests' contexts %q: %.300s", k.name, i, foreign, got.text)
	}
	switch {
	case k.ok && (!got.ok || got.value != echoValue(i) || got.variant != echoVariant(i)):
		t.Errorf("%s #%d: want variant %q of its own context, got %.300s", k.name, i, echoVariant(i), got.text)
	case !k.ok && got.ok:
		t.Errorf("%s #%d: a request that must fail was answered %.300s", k.name, i, got.text)
	}
}

// inspectPool takes every buffer set out of svc's pool (until the pool makes a new
// one, counted by created), reports those that are not wiped and returns how many
// it inspected. The sets it took stay out of the pool.
func inspectPool(t *testing.T, svc *Service, created *atomic.Int64) int {
	t.Helper()
	pooled := 0
	for range 1000 {
		before := created.Load()
		fb := svc.getFastBuffers()
		if created.Load() != before {
			break // the pool is empty
		}
		pooled++
		if msg := unwiped(fb); msg != "" {
			t.Errorf("a pooled buffer keeps a request's bytes: %s", msg)
		}
	}
	return pooled
}

// unwiped describes what fb still holds of a request ("" when nothing): lengths
// must be 0 and every byte of every array up to its capacity 0.
func unwiped(fb *fastBuffers) string {
	input, scratch := fb.parser.Retained()
	if len(fb.in) != 0 || len(fb.out) != 0 || len(fb.zip) != 0 || input != nil {
		return fmt.Sprintf("not truncated: in %d, out %d, zip %d bytes, parser input kept %v",
			len(fb.in), len(fb.out), len(fb.zip), input != nil)
	}
	for _, b := range []struct {
		name string
		b    []byte
	}{{"in", fb.in}, {"out", fb.out}, {"zip", fb.zip}, {"scratch", scratch}} {
		all := b.b[:cap(b.b)]
		if j := bytes.IndexFunc(all, func(r rune) bool { return r != 0 }); j >= 0 {
			end := min(j+80, len(all))
			return fmt.Sprintf("%s[%d:] (capacity %d) = %q", b.name, j, cap(all), all[j:end])
		}
	}
	return ""
}

// httpEcho posts a Connect JSON body and reads the answer (gzip undone by the
// client's transport).
func httpEcho(hc *http.Client, url, body string, chunked bool) (echoAnswer, error) {
	var r io.Reader = strings.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // no Content-Length
	}
	req, err := http.NewRequest(http.MethodPost, url, r)
	if err != nil {
		return echoAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return echoAnswer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return echoAnswer{}, err
	}
	a := echoAnswer{text: string(data)}
	if resp.StatusCode != http.StatusOK {
		return a, nil
	}
	var v struct{ Value, Variant string }
	if err := json.Unmarshal(data, &v); err != nil {
		return a, fmt.Errorf("status 200 with a body that is not an answer: %w", err)
	}
	a.ok, a.value, a.variant = true, v.Value, v.Variant
	return a, nil
}

// grpcEcho calls ResolveString of k's API over grpc-go.
func grpcEcho(t *testing.T, conn *grpc.ClientConn, k echoKind, i int) (echoAnswer, error) {
	t.Helper()
	method := procPath(k.api, "string")
	got := invokeRaw(t, conn, method, echoResolve(t, i, k.size, k.broken), nil)
	a := echoAnswer{text: got.Message + string(got.Body)}
	if got.Code != codes.OK {
		return a, nil
	}
	msg := responseFor(t, method)
	if err := proto.Unmarshal(got.Body, msg); err != nil {
		return a, err
	}
	r, ok := msg.(interface {
		GetValue() string
		GetVariant() string
	})
	if !ok {
		return a, fmt.Errorf("%T is not a string response", msg)
	}
	a.ok, a.value, a.variant = true, r.GetValue(), r.GetVariant()
	return a, nil
}

// abortedUpload sends an HTTP/1.1 request whose body stops halfway through its
// declared length, then closes the connection.
func abortedUpload(addr, path, body string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: flagd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, len(body))
	if _, err := io.WriteString(c, head+body[:len(body)/2]); err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite() // the server's body read ends early (unexpected EOF)
	}
	// whatever the server answers (connect-go's error, or nothing), it must not
	// carry another request's context; a reset is fine
	data, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		return err
	}
	if m := echoMarker.FindString(string(data)); m != "" && !strings.Contains(body, m) {
		return fmt.Errorf("the answer to a cut-off upload names another context: %q", m)
	}
	return nil
}

// TestPooledBuffersWiped: after each kind of request the fast path serves (an
// answer gzipped for the client, escapes decoded through the scratch buffer, an
// error answer, a body handed to connect-go after a failed decode or a failed
// read), the buffers it returns to the pool are truncated and hold no byte of the
// request, its context or its answer; buffers grown over maxPooledBody are not
// returned to the pool at all.
func TestPooledBuffersWiped(t *testing.T) {
	const i = 4 // an even context: a long answer, gzipped
	tests := []struct {
		name     string
		body     io.Reader
		decision string
		status   int
		used     func(fb *fastBuffers) bool // the request used the buffers the test then inspects
		pooled   bool
	}{
		{name: "answer, gzipped, escapes", body: strings.NewReader(echoBody(i, 2000, true, "}")), status: http.StatusOK,
			used: func(fb *fastBuffers) bool {
				_, scratch := fb.parser.Retained()
				return cap(fb.zip) > 0 && len(scratch) > 0
			}, pooled: true},
		{name: "error answer", body: strings.NewReader(`{"flagKey":"` + echoVariant(i) + `"}`), status: http.StatusNotFound,
			used: func(fb *fastBuffers) bool { return cap(fb.out) > 0 }, pooled: true},
		{name: "decode failed", body: strings.NewReader(echoBody(i, 3000, false, ",}")), decision: "body not decoded by the fast path",
			status: http.StatusBadRequest, used: func(fb *fastBuffers) bool { return cap(fb.in) >= 3000 }, pooled: true},
		{name: "read failed", body: io.MultiReader(strings.NewReader(echoBody(i, 3000, false, "}")[:2000]), iotestErrReader{}),
			decision: "reading the body failed", used: func(fb *fastBuffers) bool { return cap(fb.in) >= 2000 }, pooled: true},
		{name: "over the threshold", body: io.MultiReader(strings.NewReader(echoBody(i, maxPooledBody+100, false, "}"))), status: http.StatusOK,
			used: func(fb *fastBuffers) bool { return cap(fb.in) > maxPooledBody }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := newService(withDefaults(t, Options{Store: echoStore(t, 8)}), true)
			var made []*fastBuffers
			newBufs := svc.fastBufs.New
			svc.fastBufs.New = func() any {
				fb := newBufs().(*fastBuffers)
				made = append(made, fb)
				return fb
			}
			var decision string
			svc.observe = func(why string) { decision = why }
			req := httptest.NewRequest(http.MethodPost, procPath(apiV2, "string"), tc.body)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept-Encoding", "gzip")
			rec := httptest.NewRecorder()
			svc.Handler().ServeHTTP(rec, req)
			if decision != tc.decision {
				t.Fatalf("fast path decision %q, want %q", decision, tc.decision)
			}
			if tc.status != 0 && rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status == http.StatusOK {
				if body := recordedBody(t, rec); !bytes.Contains(body, []byte(`"variant":"`+echoVariant(i)+`"`)) {
					t.Fatalf("answer %s, want variant %s", body, echoVariant(i))
				}
			}
			if len(made) != 1 {
				t.Fatalf("%d buffers made, want 1", len(made))
			}
			fb := made[0]
			if !tc.used(fb) {
				_, scratch := fb.parser.Retained()
				t.Fatalf("the request did not use the buffers under test: in %d, out %d, zip %d, scratch %d",
					cap(fb.in), cap(fb.out), cap(fb.zip), len(scratch))
			}
			if tc.pooled {
				if msg := unwiped(fb); msg != "" {
					t.Errorf("returned to the pool unwiped: %s", msg)
				}
				return
			}
			if got := svc.getFastBuffers(); got == fb {
				t.Error("a buffer over maxPooledBody went back to the pool")
			}
		})
	}
}

// recordedBody is a recorded answer's body, gunzipped if it is compressed.
func recordedBody(t *testing.T, rec *httptest.ResponseRecorder) []byte {
	t.Helper()
	body := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") != "gzip" {
		return body
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body, err = io.ReadAll(zr); err != nil {
		t.Fatal(err)
	}
	return body
}

// scribblingPool is grpc-go's buffer pool, except that a buffer returned to it is
// overwritten with 'Z' first: whatever still reads it after grpc-go freed it (a
// decoded string aliasing the message) reads garbage, deterministically.
type scribblingPool struct {
	mem.BufferPool
	puts *atomic.Int64
}

func (p scribblingPool) Put(b *[]byte) {
	all := (*b)[:cap(*b)]
	for i := range all {
		all[i] = 'Z'
	}
	p.puts.Add(1)
	p.BufferPool.Put(b)
}

// iotestErrReader fails every read, as a broken connection does.
type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }
