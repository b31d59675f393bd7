package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// splitServer serves a grpc-go health service and an HTTP handler answering
// "http/<major> tls=<bool> read=<body bytes>" on one split listener.
type splitServer struct {
	addr    string
	grpcTLS chan bool // what GRPCIsTLS said for each gRPC call
	done    chan error
	cancel  context.CancelFunc
}

func startSplit(t *testing.T, cfg ListenConfig) *splitServer {
	t.Helper()
	ln, err := Listen(ListenConfig{Name: "split", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	s := &splitServer{addr: ln.Addr().String(), grpcTLS: make(chan bool, 100), done: make(chan error, 1)}
	cfg.Name = "split"
	opts := append(GRPCServerOptions(cfg), grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		RequestReceived(ctx)
		select {
		case s.grpcTLS <- GRPCIsTLS(ctx):
		default:
		}
		return next(ctx, req)
	}))
	g := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(g, health.NewServer())
	cfg.GRPC = g
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "http/%d tls=%v read=%d", r.ProtoMajor, r.TLS != nil, n)
	})
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() { s.done <- Serve(ctx, ln, cfg, handler, zerolog.Nop(), nil) }()
	t.Cleanup(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s of the shutdown")
		}
	})
	return s
}

func h2cTransport(t *testing.T) *http.Transport {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func h1Transport(t *testing.T, tlsConf *tls.Config) *http.Transport {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols), TLSClientConfig: tlsConf}
	tr.Protocols.SetHTTP1(true)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func h2TLSTransport(t *testing.T, tlsConf *tls.Config) *http.Transport {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols), TLSClientConfig: tlsConf}
	tr.Protocols.SetHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// post sends a POST and returns status and body.
func postWith(t *testing.T, tr http.RoundTripper, url, contentType string, body []byte, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	req.Header.Set("Content-Type", contentType)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("POST %s (%s): %v", url, contentType, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func healthCheck(t *testing.T, addr string, creds credentials.TransportCredentials) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("grpc-go health check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v", resp.GetStatus())
	}
}

// TestSplitRoutesConnections: on a plaintext listener, HTTP/1.1 and every HTTP/2
// request that is not gRPC with the protobuf codec reach the HTTP handler; gRPC
// goes to grpc-go, unless the first request carries a header proxies add.
func TestSplitRoutesConnections(t *testing.T) {
	s := startSplit(t, ListenConfig{ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second})
	url := "http://" + s.addr + "/x"
	healthCheck(t, s.addr, insecure.NewCredentials())
	if got := <-s.grpcTLS; got {
		t.Error("GRPCIsTLS on a plaintext connection")
	}
	for _, c := range []struct {
		name        string
		tr          *http.Transport
		contentType string
		header      http.Header
		want        string
	}{
		{"HTTP/1.1", h1Transport(t, nil), "application/json", nil, "http/1 tls=false read=4"},
		{"h2c Connect JSON", h2cTransport(t), "application/json", nil, "http/2 tls=false read=4"},
		{"h2c gRPC-Web", h2cTransport(t), "application/grpc-web+proto", nil, "http/2 tls=false read=4"},
		{"h2c gRPC with the JSON codec", h2cTransport(t), "application/grpc+json", nil, "http/2 tls=false read=4"},
		{"h2c gRPC through a proxy", h2cTransport(t), "application/grpc", http.Header{"X-Forwarded-For": {"10.0.0.1"}}, "http/2 tls=false read=4"},
		{"h2c gRPC through Envoy", h2cTransport(t), "application/grpc", http.Header{"X-Envoy-Attempt-Count": {"1"}}, "http/2 tls=false read=4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := postWith(t, c.tr, url, c.contentType, []byte("body"), c.header)
			if status != http.StatusOK || body != c.want {
				t.Errorf("%d %q, want 200 %q", status, body, c.want)
			}
		})
	}
	// gRPC without a proxy header is grpc-go's: a plain POST of it gets grpc-go's
	// answer to a request that is not a gRPC message (no HTTP handler body)
	status, body := postWith(t, h2cTransport(t), url, "application/grpc", []byte("body"), nil)
	if strings.HasPrefix(body, "http/") {
		t.Errorf("gRPC without a proxy header reached the HTTP handler: %d %q", status, body)
	}
}

// TestSplitTLS: with TLS the splitter terminates it; HTTP/1.1 and HTTP/2 requests
// see Request.TLS, gRPC calls see TLS peer information, and a plaintext request to
// the TLS port gets net/http's answer.
func TestSplitTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "split")
	r, err := NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := startSplit(t, ListenConfig{TLS: r.TLSConfig(), ReadHeaderTimeout: 3 * time.Second})
	pemData, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	clientTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	url := "https://" + s.addr + "/x"
	for name, tr := range map[string]*http.Transport{"HTTP/1.1": h1Transport(t, clientTLS), "HTTP/2": h2TLSTransport(t, clientTLS)} {
		t.Run(name, func(t *testing.T) {
			status, body := postWith(t, tr, url, "application/json", []byte("body"), nil)
			want := fmt.Sprintf("http/%d tls=true read=4", map[string]int{"HTTP/1.1": 1, "HTTP/2": 2}[name])
			if status != http.StatusOK || body != want {
				t.Errorf("%d %q, want 200 %q", status, body, want)
			}
		})
	}
	healthCheck(t, s.addr, credentials.NewTLS(clientTLS))
	if got := <-s.grpcTLS; !got {
		t.Error("GRPCIsTLS false on a TLS connection")
	}
	status, _ := postWith(t, h1Transport(t, nil), "http://"+s.addr+"/x", "application/json", []byte("body"), nil)
	if status != http.StatusBadRequest {
		t.Errorf("plaintext HTTP to the TLS port: %d, want 400", status)
	}
}

// TestSplitLargeBodies: the bytes read while classifying end anywhere in a frame;
// what follows must reach the server intact (the client's acknowledgement of the
// splitter's SETTINGS removed wherever it falls).
func TestSplitLargeBodies(t *testing.T) {
	s := startSplit(t, ListenConfig{ReadHeaderTimeout: 3 * time.Second})
	url := "http://" + s.addr + "/x"
	for i := range 20 {
		body := bytes.Repeat([]byte("x"), 100_000+i*997)
		status, got := postWith(t, h2cTransport(t), url, "application/json", body, nil)
		if want := fmt.Sprintf("http/2 tls=false read=%d", len(body)); status != http.StatusOK || got != want {
			t.Fatalf("body of %d bytes: %d %q, want %q", len(body), status, got, want)
		}
	}
}

// rawH2 is a client connection speaking HTTP/2 frames directly.
type rawH2 struct {
	conn net.Conn
	fr   *http2.Framer
}

func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, h2Preface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return &rawH2{conn: conn, fr: fr}
}

// TestSplitAnswersBeforeTheFirstRequest: a client waiting for the server's SETTINGS
// (grpc-go, grpc-java) gets them at once, and a PING before any request is
// answered; the connection then serves its first request normally.
func TestSplitAnswersBeforeTheFirstRequest(t *testing.T) {
	s := startSplit(t, ListenConfig{ReadHeaderTimeout: 3 * time.Second})
	c := dialRawH2(t, s.addr)
	f, err := c.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want the server's SETTINGS", f)
	}
	if err := c.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	if err := c.fr.WritePing(false, data); err != nil {
		t.Fatal(err)
	}
	f, err = c.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if pf, ok := f.(*http2.PingFrame); !ok || !pf.IsAck() || pf.Data != data {
		t.Fatalf("answer to PING: %v, want its ACK", f)
	}
	// the first request, to the HTTP handler
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, hf := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", s.addr}, {":path", "/x"}, {"content-type", "application/json"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteData(1, true, []byte("body")); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	var body []byte
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the response: %v (body so far %q)", err, body)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			_ = c.fr.WriteSettingsAck()
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			if fields[0].Value != "200" {
				t.Fatalf("status %v", fields)
			}
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			if f.StreamEnded() {
				if string(body) != "http/2 tls=false read=4" {
					t.Fatalf("body %q", body)
				}
				return
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v %s", f.ErrCode, f.DebugData())
		}
	}
}

// readUntilClosed reads until the server closes the connection and returns how long
// that took.
func readUntilClosed(conn net.Conn) (time.Duration, error) {
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	for {
		if _, err := conn.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return time.Since(start), err
			}
			return time.Since(start), nil
		}
	}
}

// TestSplitTimeouts: a connection that sends nothing is closed after
// ReadHeaderTimeout; an HTTP/2 connection without a request after IdleTimeout, as
// the servers close idle connections.
func TestSplitTimeouts(t *testing.T) {
	s := startSplit(t, ListenConfig{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 600 * time.Millisecond})
	silent, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if took, err := readUntilClosed(silent); err != nil || took > 5*time.Second {
		t.Errorf("a silent connection was not closed: %v after %v", err, took)
	}
	idle := dialRawH2(t, s.addr)
	start := time.Now()
	if _, err := readUntilClosed(idle.conn); err != nil {
		t.Errorf("an idle HTTP/2 connection was not closed: %v", err)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("an idle HTTP/2 connection was closed after %v, before the idle timeout", took)
	}
}

// TestSplitConcurrentConnections: many connections of both kinds at once, each
// routed right.
func TestSplitConcurrentConnections(t *testing.T) {
	s := startSplit(t, ListenConfig{ReadHeaderTimeout: 3 * time.Second})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			if i%2 == 0 {
				conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					errs <- err
					return
				}
				defer conn.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					errs <- err
				}
				return
			}
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tr.Protocols.SetUnencryptedHTTP2(true)
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/x", strings.NewReader("body"))
			req.Header.Set("Content-Type", "application/json")
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "http/2 tls=false read=4" {
				errs <- fmt.Errorf("HTTP answer %q", b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSplitConnFilter: the acknowledgement is removed wherever the reads split the
// frames, and everything else passes unchanged.
func TestSplitConnFilter(t *testing.T) {
	frame := func(typ, flags byte, payload []byte) []byte {
		h := []byte{0, 0, 0, typ, flags, 0, 0, 0, 1}
		h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		return append(h, payload...)
	}
	data := frame(0x0, 0, bytes.Repeat([]byte("d"), 300))
	ack := frame(frameSettings, flagAck, nil)
	window := frame(frameWindowUpdate, 0, binary.BigEndian.AppendUint32(nil, 1000))
	stream := bytes.Join([][]byte{data, window, ack, data, ack}, nil)
	want := bytes.Join([][]byte{data, window, data, ack}, nil) // only the first acknowledgement goes
	for chunk := 1; chunk <= len(stream); chunk += 7 {
		c := &splitConn{dropAck: true}
		var got []byte
		for i := 0; i < len(stream); i += chunk {
			got = append(got, c.filter(stream[i:min(i+chunk, len(stream))])...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("reads of %d bytes: filtered stream differs (got %d bytes, want %d)", chunk, len(got), len(want))
		}
	}
}
