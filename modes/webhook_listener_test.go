package modes

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/flagpole-dev/flagpole/webhook"
)

// webhookListener is the admission server exactly as `flagpole webhook` builds and
// serves it (webhookServer, server.Serve), on 127.0.0.1 with a mounted certificate;
// the API server it would read its caches from is never reached (the requests of
// these tests need no lookup). inflight counts the handlers running at once.
type webhookListener struct {
	addr     string
	roots    *x509.CertPool
	reg      *prometheus.Registry
	inflight atomic.Int64
	peak     atomic.Int64
}

// startWebhookListener parses `webhook` with args as main does and serves the
// admission server until the test ends.
func startWebhookListener(t *testing.T, args ...string) *webhookListener {
	t.Helper()
	certFile, _, roots := selfSigned(t)
	var root struct {
		Webhook WebhookCmd `cmd:""`
	}
	parser, err := kong.New(&root, kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(append([]string{"webhook", "--cert-dir", filepath.Dir(certFile), "--webhook-bind-address", "127.0.0.1",
		"--webhook-port", "0", "--sidecar-image", "flagpole:test"}, args...)); err != nil {
		t.Fatal(err)
	}
	c := &root.Webhook
	injector, err := c.injectorConfig()
	if err != nil {
		t.Fatal(err)
	}
	restCfg := &rest.Config{Host: "https://127.0.0.1:1"} // never contacted
	cluster, err := sidecar.NewCluster(restCfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	l := &webhookListener{roots: roots, reg: prometheus.NewRegistry()}
	hook, err := webhookServer(restCfg, zerolog.Nop(), l.reg, cluster, injector, c.KubeFlags, c.WebhookFlags)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := server.Listen(hook.cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		storeMax(&l.peak, l.inflight.Add(1))
		defer l.inflight.Add(-1)
		hook.handler.ServeHTTP(w, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- hook.certs.Run(ctx) }()
	go func() { done <- server.Serve(ctx, ln, hook.cfg, counted, zerolog.Nop(), nil) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("webhook listener: %v", err)
			}
		}
	})
	return l
}

// review posts an AdmissionReview of an unannotated pod to /mutate-v1-pod over a
// new HTTP/2 connection and returns the answer's UID and message.
func (l *webhookListener) review(t *testing.T, certs ...tls.Certificate) (string, error) {
	t.Helper()
	raw, err := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID("uid-1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "ns", Name: "p",
			Operation: admissionv1.Create, Object: k8sruntime.RawExtension{Raw: raw}}})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.roots, Certificates: certs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+l.addr+webhook.PathMutatePod, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil || out.Response == nil || resp.ProtoMajor != 2 {
		return "", errors.New("not an HTTP/2 AdmissionReview answer: " + resp.Proto + " " + string(data))
	}
	return string(out.Response.UID) + " " + out.Response.Result.Message, nil
}

// h2client speaks raw HTTP/2 frames over TLS to the webhook, as an attacker would.
type h2client struct {
	conn *tls.Conn
	fr   *http2.Framer
	wmu  sync.Mutex
	hbuf bytes.Buffer
	enc  *hpack.Encoder

	maxStreams atomic.Uint32
	resets     atomic.Int64
	goAway     atomic.Int64 // 1 + the error code of a GOAWAY received; 0: none
	done       chan struct{}
}

func dialH2(t *testing.T, l *webhookListener) *h2client {
	t.Helper()
	conn, err := tls.Dial("tcp", l.addr, &tls.Config{RootCAs: l.roots, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN negotiated %q, want h2", p)
	}
	c := &h2client{conn: conn, fr: http2.NewFramer(conn, conn), done: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.read()
	return c
}

// read handles the server's frames until the connection ends.
func (c *h2client) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				c.maxStreams.Store(v)
			}
			_ = c.write(c.fr.WriteSettingsAck)
		case *http2.RSTStreamFrame:
			c.resets.Add(1)
		case *http2.GoAwayFrame:
			c.goAway.Store(1 + int64(f.ErrCode))
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				_ = c.write(func() error { return c.fr.WritePing(true, data) })
			}
		}
	}
}

func (c *h2client) write(fn func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return fn()
}

// open starts stream id as a POST of an AdmissionReview whose 100-byte body is
// never sent (its handler waits for it).
func (c *h2client) open(id uint32) error {
	return c.write(func() error {
		c.hbuf.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "127.0.0.1"},
			{":path", webhook.PathMutatePod}, {"content-type", "application/json"}, {"content-length", "100"}} {
			_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	})
}

func (c *h2client) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// until polls cond (every 5 ms, at most 20 s).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWebhookListenerHTTP2Floods attacks the admission server's own listener (the
// ListenConfig and handler `flagpole webhook` serves) over HTTP/2 from a client
// that reaches its port: more streams than the cap on one connection, a rapid
// reset flood (CVE-2023-44487: open and cancel streams as fast as possible), and a
// CONTINUATION flood (CVE-2023-45288: one header block that never ends). OFO turns
// HTTP/2 off on its webhook for these; flagpole keeps it and relies on the
// listener's limits. Each attack is bounded (at most 250 handlers at once, the
// flood connections closed by the server) and a real admission is answered after
// each.
func TestWebhookListenerHTTP2Floods(t *testing.T) {
	l := startWebhookListener(t)
	if got, err := l.review(t); err != nil || !strings.HasPrefix(got, "uid-1 ") {
		t.Fatalf("admission before the attacks: %q %v", got, err)
	}
	baseline := runtime.NumGoroutine()
	var peakGoroutines atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // samples the goroutines while the attacks run
		defer close(sampled)
		for {
			storeMax(&peakGoroutines, int64(runtime.NumGoroutine()))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	// Between attacks the goroutines go back to the baseline, so the peak is that
	// of one attack.
	idle := func(t *testing.T, c *h2client) {
		t.Helper()
		c.conn.Close()
		<-c.done
		until(t, "every handler of the attack has returned", func() bool {
			return l.inflight.Load() == 0 && runtime.NumGoroutine() <= baseline+5
		})
	}
	t.Run("streams over the cap are refused", func(t *testing.T) { floodStreams(t, l, idle) })
	t.Run("rapid reset", func(t *testing.T) { rapidReset(t, l, idle) })
	t.Run("CONTINUATION flood", func(t *testing.T) { continuationFlood(t, l, idle) })
	close(stop)
	<-sampled

	// A bound on goroutines: net/http runs at most SETTINGS_MAX_CONCURRENT_STREAMS
	// handler goroutines per connection (the time they flush their answer
	// included) and queues the rest; goroutines whose handler has ended are still
	// counted until the runtime has torn them down (up to ~130 more were seen on 2
	// cores during the rapid reset). A server without the cap could run one per
	// stream. The exact check is on handlers (at most 250 at once); this one is a
	// sanity bound, 20 times below one goroutine per stream of the rapid reset.
	if p, bound := peakGoroutines.Load(), int64(baseline+4*streamCap); p > bound {
		t.Errorf("goroutines peaked at %d during the attacks (baseline %d), want at most %d", p, baseline, bound)
	}
	t.Logf("goroutines: baseline %d, peak %d during the attacks", baseline, peakGoroutines.Load())
	if got, err := l.review(t); err != nil || !strings.HasPrefix(got, "uid-1 ") {
		t.Errorf("admission after the attacks: %q %v", got, err)
	}
}

// streamCap is the webhook listener's SETTINGS_MAX_CONCURRENT_STREAMS.
const streamCap = 250

// storeMax raises m to n if n is larger.
func storeMax(m *atomic.Int64, n int64) {
	for {
		p := m.Load()
		if n <= p || m.CompareAndSwap(p, n) {
			return
		}
	}
}

// floodStreams opens 1,000 streams whose body never comes on one connection: the
// server advertises and enforces 250 (the others are reset) and runs one handler
// for each of those, without closing the connection.
func floodStreams(t *testing.T, l *webhookListener, idle func(*testing.T, *h2client)) {
	t.Helper()
	c := dialH2(t, l)
	const streams = 1000
	for i := range uint32(streams) {
		if err := c.open(2*i + 1); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	until(t, "the server refused every stream over the cap and runs a handler for each of the others", func() bool {
		return c.resets.Load() >= streams-streamCap && l.inflight.Load() == streamCap
	})
	if got := c.maxStreams.Load(); got != streamCap {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d", got, streamCap)
	}
	if got := c.resets.Load(); got != streams-streamCap {
		t.Errorf("%d streams reset, want %d", got, streams-streamCap)
	}
	if c.closed() {
		t.Error("the server closed a connection that only asked for too many streams")
	}
	idle(t, c)
	if p := l.peak.Load(); p != streamCap {
		t.Errorf("at most %d handlers ran at once, want %d", p, streamCap)
	}
}

// rapidReset opens and cancels 20,000 streams as fast as it can on one
// connection: no more than 250 handlers ever run at once.
func rapidReset(t *testing.T, l *webhookListener, idle func(*testing.T, *h2client)) {
	t.Helper()
	l.peak.Store(0)
	c := dialH2(t, l)
	const streams = 20000
	sent := 0
	for i := range uint32(streams) {
		id := 2*i + 1
		if c.open(id) != nil || c.write(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeCancel) }) != nil || c.closed() {
			break
		}
		sent++
	}
	closed := c.closed()
	idle(t, c)
	t.Logf("rapid reset: %d of %d streams opened and cancelled before the server closed the connection (closed: %v, GOAWAY code+1: %d); at most %d handlers at once",
		sent, streams, closed, c.goAway.Load(), l.peak.Load())
	if p := l.peak.Load(); p > streamCap {
		t.Errorf("%d handlers ran at once, want at most %d", p, streamCap)
	}
}

// continuationFlood sends one header block of 16 MB in CONTINUATION frames that
// never ends it: the server closes the connection well before (its limit is
// MaxHeaderBytes, 1 MiB).
func continuationFlood(t *testing.T, l *webhookListener, idle func(*testing.T, *h2client)) {
	t.Helper()
	c := dialH2(t, l)
	value := strings.Repeat("a", 16000)
	frag := func(first bool) []byte {
		c.hbuf.Reset()
		if first {
			for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", webhook.PathMutatePod}} {
				_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
		}
		_ = c.enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: value, Sensitive: true}) // never indexed: every frame carries it
		return bytes.Clone(c.hbuf.Bytes())
	}
	if err := c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag(true)})
	}); err != nil {
		t.Fatal(err)
	}
	const frames = 1000
	sent := 0
	for range frames {
		if c.closed() || c.write(func() error { return c.fr.WriteContinuation(1, false, frag(false)) }) != nil {
			break
		}
		sent++
	}
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the server still reads a header block of %d MB", sent*16/1000)
	}
	if sent == frames {
		t.Errorf("the server read all %d CONTINUATION frames (16 MB) of a header block before closing", frames)
	}
	t.Logf("CONTINUATION flood: connection closed by the server after %d frames of 16 kB were written (GOAWAY code+1: %d)", sent, c.goAway.Load())
	idle(t, c)
}

// TestWebhookListenerClientCertificates: --webhook-client-ca and
// --webhook-client-names make the admission server refuse, at the TLS handshake, a
// caller without a certificate of that CA and name; an accepted caller is answered
// over HTTP/2; refusals are counted on the operator's registry.
func TestWebhookListenerClientCertificates(t *testing.T) {
	dir := t.TempDir()
	caPEM, issue := testClientCA(t)
	caFile := filepath.Join(dir, "client-ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	l := startWebhookListener(t, "--webhook-client-ca", caFile, "--webhook-client-names", "kube-apiserver-webhook-client")
	if got, err := l.review(t, issue("kube-apiserver-webhook-client")); err != nil || !strings.HasPrefix(got, "uid-1 ") {
		t.Fatalf("the API server's certificate: %q %v", got, err)
	}
	for _, tc := range []struct {
		name   string
		certs  []tls.Certificate
		reason string
	}{
		{"no certificate", nil, "missing"},
		{"another identity", []tls.Certificate{issue("system:node:worker")}, "name"},
	} {
		if got, err := l.review(t, tc.certs...); err == nil {
			t.Errorf("%s: answered %q", tc.name, got)
		}
		if n := refusals(t, l.reg, tc.reason); n != 1 {
			t.Errorf("%s: refusals{reason=%q} = %v, want 1", tc.name, tc.reason, n)
		}
	}
	if l.peak.Load() != 1 {
		t.Errorf("%d handlers ran, want 1 (the accepted caller's)", l.peak.Load())
	}
}

// TestWebhookClientFlagsErrors: a bad --webhook-client-ca stops the start with an
// error naming it; --webhook-client-names alone is refused.
func TestWebhookClientFlagsErrors(t *testing.T) {
	certFile, _, _ := selfSigned(t)
	certDir, dir := filepath.Dir(certFile), t.TempDir()
	bad := filepath.Join(dir, "bad.crt")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--webhook-client-ca", bad}, "--webhook-client-ca: " + bad + ": no PEM certificate in it"},
		{[]string{"--webhook-client-ca", filepath.Join(dir, "missing.crt")}, "--webhook-client-ca: open " + filepath.Join(dir, "missing.crt")},
		{[]string{"--webhook-client-names", "kube-apiserver"}, "--webhook-client-names needs --webhook-client-ca"},
	} {
		var root struct {
			Webhook WebhookCmd `cmd:""`
		}
		parser, err := kong.New(&root, kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parser.Parse(append([]string{"webhook", "--cert-dir", certDir}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		_, err = webhookServer(&rest.Config{Host: "https://127.0.0.1:1"}, zerolog.Nop(), prometheus.NewRegistry(), nil, webhook.InjectorConfig{},
			root.Webhook.KubeFlags, root.Webhook.WebhookFlags)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// refusals reads flagpole_client_certificate_refusals_total{reason} from g.
func refusals(t *testing.T, g prometheus.Gatherer, reason string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "flagpole_client_certificate_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// testClientCA returns a CA in PEM and a function issuing client certificates of it.
func testClientCA(t *testing.T) ([]byte, func(cn string) tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(cn string) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), issue
}
