package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// wait bounds every wait of these tests; they poll, they never assert timing.
const wait = 10 * time.Second

// serveTest serves h with cfg on 127.0.0.1:0 until the test ends.
func serveTest(t *testing.T, cfg ListenConfig, h http.Handler) string {
	t.Helper()
	cfg.Name, cfg.Address = "test", "127.0.0.1:0"
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, cfg, h, zerolog.Nop(), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = io.WriteString(w, "ok")
})

// keepAlive opens a connection and completes one request on it.
func keepAlive(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, "error: " + err.Error()
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return c, fmt.Sprintf("%d %s", res.StatusCode, strings.TrimSpace(string(body)))
}

// closedByServer waits until the server closes c (a read ends with EOF or a
// reset), discarding what the server sends before.
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestConnLimit: connections beyond the cap (shared by listeners) are refused at
// once with a 503 on plaintext HTTP, and the slot frees when a connection closes.
func TestConnLimit(t *testing.T) {
	limit := NewConnLimit(2, zerolog.Nop())
	a := serveTest(t, ListenConfig{Conns: limit}, ok)
	b := serveTest(t, ListenConfig{Conns: limit}, ok)
	first, got := keepAlive(t, a)
	if got != "200 ok" {
		t.Fatalf("first connection: %s", got)
	}
	if _, got := keepAlive(t, b); got != "200 ok" {
		t.Fatalf("second connection, other listener: %s", got)
	}
	if _, got := keepAlive(t, a); got != "503 too many connections" {
		t.Errorf("third connection: %s, want 503 too many connections", got)
	}
	if limit.Open() != 2 || limit.Refused() != 1 {
		t.Errorf("open %d refused %d, want 2 and 1", limit.Open(), limit.Refused())
	}
	first.Close()
	deadline := time.Now().Add(wait)
	for {
		if _, got := keepAlive(t, b); got == "200 ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted after one closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDefaultConnLimits(t *testing.T) {
	for _, tc := range []struct {
		nofile           uint64
		data, management int
	}{
		{0, 10000, 64}, {40, 15, 5}, {1024, 896, 64}, {4096, 3968, 64}, {1 << 20, 10000, 64}, {8, 1, 4},
	} {
		data, management := DefaultConnLimits(tc.nofile)
		if data != tc.data || management != tc.management {
			t.Errorf("DefaultConnLimits(%d) = %d, %d; want %d, %d", tc.nofile, data, management, tc.data, tc.management)
		}
	}
}

// h2Conn opens an HTTP/2 prior-knowledge connection and answers the server's
// SETTINGS; frames are read by the caller.
func h2Conn(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

// h2Post opens stream id as a POST with the headers; no body is sent.
func h2Post(t *testing.T, fr *http2.Framer, id uint32, contentLength string) {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}, {"content-length", contentLength}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// untilFrame reads frames until match returns true (true) or the connection ends
// (false); SETTINGS are acknowledged.
func untilFrame(c net.Conn, fr *http2.Framer, match func(http2.Frame) bool) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return false
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			_ = fr.WriteSettingsAck()
		}
		if match(f) {
			return true
		}
	}
}

// TestIdleTimeout: an HTTP/1.1 keep-alive connection and an HTTP/2 connection
// without a stream are closed after IdleTimeout; an HTTP/2 connection with a
// stream in progress is not.
func TestIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			w.WriteHeader(http.StatusOK)
			_ = http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		ok(w, r)
	})
	const idle = 100 * time.Millisecond
	addr := serveTest(t, ListenConfig{IdleTimeout: idle}, h)

	c, got := keepAlive(t, addr)
	if got != "200 ok" {
		t.Fatal(got)
	}
	if !closedByServer(c) {
		t.Error("an idle HTTP/1.1 keep-alive connection was not closed")
	}

	hc, fr := h2Conn(t, addr)
	if !untilFrame(hc, fr, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }) {
		t.Error("an HTTP/2 connection without a stream got no GOAWAY")
	}

	busy, bfr := h2Conn(t, addr)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/hold"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := bfr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
		t.Fatal(err)
	}
	if !untilFrame(busy, bfr, func(f http2.Frame) bool { _, ok := f.(*http2.HeadersFrame); return ok }) {
		t.Fatal("no response headers on the held stream")
	}
	// many idle periods later the connection is still there
	_ = busy.SetReadDeadline(time.Now().Add(10 * idle))
	for {
		f, err := bfr.ReadFrame()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if err != nil {
			t.Fatalf("the connection of a stream in progress ended: %v", err)
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatal("GOAWAY on a connection with a stream in progress")
		}
	}
}

// TestReadTimeoutBody: a request whose body does not arrive within ReadTimeout
// fails on HTTP/1.1 and HTTP/2 (the handler's read ends), instead of holding its
// goroutine forever; once the body was read, an HTTP/1.1 response streams past the
// deadline (EventStreams rely on it).
func TestReadTimeoutBody(t *testing.T) {
	const timeout = 100 * time.Millisecond
	var mu sync.Mutex
	var readErrs []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			rc := http.NewResponseController(w)
			for i := range 3 {
				fmt.Fprintf(w, "chunk %d\n", i)
				_ = rc.Flush()
				select {
				case <-time.After(2 * timeout):
				case <-r.Context().Done():
					return
				}
			}
			return
		}
		_, err := io.Copy(io.Discard, r.Body)
		mu.Lock()
		readErrs = append(readErrs, fmt.Sprint(err))
		mu.Unlock()
	})
	addr := serveTest(t, ListenConfig{ReadTimeout: timeout}, h)
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	if !closedByServer(c) {
		t.Error("an HTTP/1.1 request whose body never comes kept its connection")
	}
	hc, fr := h2Conn(t, addr)
	h2Post(t, fr, 1, "100")
	if !untilFrame(hc, fr, func(f http2.Frame) bool { return f.Header().StreamID == 1 }) {
		t.Error("an HTTP/2 stream whose body never comes got no answer")
	}
	deadline := time.Now().Add(wait)
	for {
		mu.Lock()
		n := len(readErrs)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handlers still reading a body that never comes: %q", readErrs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, e := range readErrs {
		if !strings.Contains(e, "timeout") && !strings.Contains(e, "deadline") {
			t.Errorf("body read ended with %q, want a timeout", e)
		}
	}

	s, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(wait))
	_, _ = io.WriteString(s, "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	res, err := http.ReadResponse(bufio.NewReader(s), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if want := "chunk 0\nchunk 1\nchunk 2\n"; string(body) != want {
		t.Errorf("streamed response past the read deadline: %q, want %q", body, want)
	}
}
