package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// testCA is a CA that issues client certificates in tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a client certificate; edit changes the template first.
func (ca *testCA) issue(t *testing.T, cn string, edit func(*x509.Certificate)) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// clientCertServer serves a handler counting its calls over TLS with the server
// certificate of dir and cc applied, as modes wires the webhook's listener.
func clientCertServer(t *testing.T, cc *ClientCerts) (addr string, serverCA *x509.CertPool, calls *atomic.Int64) {
	t.Helper()
	certFile, keyFile := writeCert(t, t.TempDir(), "server")
	r, err := NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.TLSConfig()
	cc.Apply(cfg)
	calls = new(atomic.Int64)
	addr = serveTest(t, ListenConfig{TLS: cfg}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, r.Proto)
	}))
	pemData, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	serverCA = x509.NewCertPool()
	serverCA.AppendCertsFromPEM(pemData)
	return addr, serverCA, calls
}

// get makes one request on a new connection presenting certs (none if empty); it
// returns the response body (the protocol) or the error.
func get(addr string, roots *x509.CertPool, certs ...tls.Certificate) (string, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: wait}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// tlsRefusal dials TLS presenting certs, sends an HTTP/1.1 request and reads the
// answer: it returns the error of the handshake or of the first read (in TLS 1.3
// the client's handshake ends before the server has checked its certificate, and
// the server's alert arrives on the first read).
func tlsRefusal(addr string, roots *x509.CertPool, certs ...tls.Certificate) error {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}

// rawRequest makes one HTTP/1.1 request over a new TLS connection with the session
// cache and reads the whole answer; it reports whether the session was resumed.
func rawRequest(addr string, roots *x509.CertPool, cache tls.ClientSessionCache, certs ...tls.Certificate) (resumed bool, err error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"}, ClientSessionCache: cache})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	resumed = conn.ConnectionState().DidResume
	_ = conn.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return resumed, err
	}
	data, err := io.ReadAll(conn)
	if err == nil && !strings.HasPrefix(string(data), "HTTP/1.1 200") {
		err = fmt.Errorf("answer %q", data)
	}
	return resumed, err
}

func writeCA(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestClientCertsTLS: with client authentication on, only a client certificate
// signed by the CA file's CAs, valid, for client authentication and (with names)
// naming an accepted identity completes a handshake; everything else is refused
// at the TLS layer (the handler never runs) and counted by reason. HTTP/2 is still
// negotiated. A new CA file is picked up without a restart, a broken one keeps the
// previous CAs, and a resumed session is checked against the CAs of the moment.
func TestClientCertsTLS(t *testing.T) {
	caA, caB := newTestCA(t, "apiserver-webhook-client-ca"), newTestCA(t, "other-ca")
	cc, _, _ := newClientCerts(t, caA.pem)
	addr, roots, calls := clientCertServer(t, cc)

	apiserver := caA.issue(t, "kube-apiserver", nil)
	for _, tc := range []struct {
		name   string
		certs  []tls.Certificate
		reason string // "" accepted
	}{
		{"the API server's certificate", []tls.Certificate{apiserver}, ""},
		{"an accepted DNS name", []tls.Certificate{caA.issue(t, "x", func(c *x509.Certificate) { c.DNSNames = []string{"kube-apiserver"} })}, ""},
		{"an accepted URI", []tls.Certificate{caA.issue(t, "x", func(c *x509.Certificate) {
			u, _ := url.Parse("spiffe://cluster.local/apiserver")
			c.URIs = []*url.URL{u}
		})}, ""},
		{"no certificate", nil, "missing"},
		{"another CA's certificate with the accepted name", []tls.Certificate{caB.issue(t, "kube-apiserver", nil)}, "untrusted"},
		{"a self-signed certificate", []tls.Certificate{func() tls.Certificate {
			self := newTestCA(t, "kube-apiserver")
			return tls.Certificate{Certificate: [][]byte{self.cert.Raw}, PrivateKey: self.key}
		}()}, "untrusted"},
		{"expired", []tls.Certificate{caA.issue(t, "kube-apiserver", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) })}, "untrusted"},
		{"for server authentication only", []tls.Certificate{caA.issue(t, "kube-apiserver", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})}, "untrusted"},
		{"the right CA, another identity", []tls.Certificate{caA.issue(t, "system:node:evil", func(c *x509.Certificate) { c.DNSNames = []string{"kube-apiserver.evil"} })}, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := calls.Load()
			var counted float64
			if tc.reason != "" {
				counted = testutil.ToFloat64(cc.failures.WithLabelValues("webhook", tc.reason))
			}
			got, err := get(addr, roots, tc.certs...)
			if tc.reason == "" {
				if err != nil || got != "HTTP/2.0" {
					t.Fatalf("refused (%q, %v), want an HTTP/2 answer", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("answered %q, want a refused handshake", got)
			}
			if err := tlsRefusal(addr, roots, tc.certs...); err == nil || !strings.Contains(err.Error(), "remote error: tls: ") {
				t.Errorf("a raw TLS client got %v, want the server's TLS alert", err)
			}
			if calls.Load() != before {
				t.Error("the handler ran for a refused client")
			}
			if n := testutil.ToFloat64(cc.failures.WithLabelValues("webhook", tc.reason)); n != counted+2 {
				t.Errorf("refusals{reason=%q} went %v -> %v, want +2 (two handshakes)", tc.reason, counted, n)
			}
		})
	}
}

// newClientCerts writes caPEM into a file and returns ClientCerts accepting the
// names kube-apiserver and spiffe://cluster.local/apiserver, with its metrics
// registered and a clock the test moves.
func newClientCerts(t *testing.T, caPEM []byte) (cc *ClientCerts, caFile string, clock *time.Time) {
	t.Helper()
	caFile = filepath.Join(t.TempDir(), "ca.crt")
	writeCA(t, caFile, caPEM)
	cc, err := NewClientCerts(ClientCertOptions{CAFile: caFile, Flag: "--webhook-client-ca", Listener: "webhook", Log: zerolog.Nop(),
		Names: []string{"kube-apiserver", " ", "spiffe://cluster.local/apiserver"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.CountFailures(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock = &now
	cc.now = func() time.Time { return *clock }
	return cc, caFile, clock
}

// TestClientCertsReload: a new CA file is picked up without a restart (at the next
// check, at most a second later), a broken one keeps the previous CAs, a bundle of
// two CAs accepts both, and a resumed TLS session is checked against the CAs of the
// moment, not those of its first handshake.
func TestClientCertsReload(t *testing.T) {
	caA, caB := newTestCA(t, "apiserver-webhook-client-ca"), newTestCA(t, "next-ca")
	cc, caFile, clock := newClientCerts(t, caA.pem)
	addr, roots, _ := clientCertServer(t, cc)
	apiserver := caA.issue(t, "kube-apiserver", nil)

	// A resumption presents no certificate: the server checks the one stored in
	// the session ticket.
	cache := tls.NewLRUClientSessionCache(4)
	if resumed, err := rawRequest(addr, roots, cache, apiserver); err != nil || resumed {
		t.Fatalf("first connection: resumed %v, %v", resumed, err)
	}
	if resumed, err := rawRequest(addr, roots, cache, apiserver); err != nil || !resumed {
		t.Fatalf("second connection: resumed %v, %v; want a resumed session", resumed, err)
	}
	// Rotation: CA B replaces CA A; picked up at the next check (once a second).
	writeCA(t, caFile, caB.pem)
	if got, err := get(addr, roots, apiserver); err != nil {
		t.Fatalf("within the second the old CA still applies: %q %v", got, err)
	}
	*clock = clock.Add(2 * time.Second)
	if _, err := get(addr, roots, apiserver); err == nil {
		t.Error("CA A's certificate accepted after the CA file changed to CA B")
	}
	if resumed, err := rawRequest(addr, roots, cache, apiserver); err == nil || !resumed {
		t.Errorf("a resumed session of CA A's certificate after the CA file changed to CA B: resumed %v, %v; want a resumed handshake refused", resumed, err)
	}
	fromB := caB.issue(t, "kube-apiserver", nil)
	if got, err := get(addr, roots, fromB); err != nil {
		t.Errorf("CA B's certificate after the rotation: %q %v", got, err)
	}
	// A broken file keeps CA B.
	writeCA(t, caFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	*clock = clock.Add(2 * time.Second)
	if changed, err := cc.Reload(); changed || err == nil {
		t.Errorf("Reload of a broken file: changed %v, err %v; want an error", changed, err)
	}
	if got, err := get(addr, roots, fromB); err != nil {
		t.Errorf("after a broken CA file: %q %v, want CA B kept", got, err)
	}
	// Both CAs during a rotation.
	writeCA(t, caFile, append(append([]byte{}, caB.pem...), caA.pem...))
	if changed, err := cc.Reload(); !changed || err != nil {
		t.Fatalf("Reload of a bundle: changed %v, err %v", changed, err)
	}
	for _, c := range []tls.Certificate{apiserver, fromB} {
		if got, err := get(addr, roots, c); err != nil {
			t.Errorf("with both CAs: %q %v", got, err)
		}
	}
}

// TestClientCertsWithoutNames: without names any certificate of the CAs is taken.
func TestClientCertsWithoutNames(t *testing.T) {
	ca := newTestCA(t, "ca")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	writeCA(t, caFile, ca.pem)
	cc, err := NewClientCerts(ClientCertOptions{CAFile: caFile, Listener: "webhook", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	addr, roots, _ := clientCertServer(t, cc)
	if got, err := get(addr, roots, ca.issue(t, "anyone", nil)); err != nil {
		t.Errorf("%q %v", got, err)
	}
	if _, err := get(addr, roots); err == nil {
		t.Error("no certificate accepted")
	}
}

// TestClientCertsFileErrors: a CA file that cannot serve is refused at start with
// the flag, the file and what is wrong.
func TestClientCertsFileErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	keyDER, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, content, want string
	}{
		{"missing", "", "no such file"},
		{"empty", "\n", "no PEM certificate in it"},
		{"not PEM", "hello", "no PEM certificate in it"},
		{"a private key", string(ca.pem) + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})), "PEM block 2 is a private key"},
		{"another block", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}})), `PEM block 1 is a "CERTIFICATE REQUEST", want CERTIFICATE`},
		{"a broken certificate", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}})), "PEM block 1: x509:"},
		{"too large", strings.Repeat("#", maxCAFile+1), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.content != "" {
				writeCA(t, path, []byte(tc.content))
			}
			_, err := NewClientCerts(ClientCertOptions{CAFile: path, Flag: "--webhook-client-ca"})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "--webhook-client-ca: ") || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want one naming --webhook-client-ca, %s and %q", err, path, tc.want)
			}
			if strings.Contains(fmtErr(err), "PRIVATE KEY-----") {
				t.Error("the error quotes the key")
			}
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
