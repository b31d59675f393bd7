package modes

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flagpole-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

// TestFlagdServesTLS: with a certificate, evaluation is TLS-only, OFREP too with
// --ofrep-tls, and management stays plaintext (probes).
func TestFlagdServesTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	c, err := parseStart(t, "-f", "file:"+examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0",
		"--bind-address", "127.0.0.1", "-c", certFile, "-k", keyFile, "--ofrep-tls")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, zerolog.Nop(), BuildInfo{}, func(a Addresses) { addrs <- a }) }()
	a := <-addrs
	waitReady(t, "http://"+a.Management+"/readyz")
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	post := func(client *http.Client, url, body string) (int, string, error) {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Proto, err
	}
	for _, url := range []string{
		"https://" + a.Evaluation + "/flagd.evaluation.v2.Service/ResolveBoolean",
		"https://" + a.OFREP + "/ofrep/v1/evaluate/flags/new-checkout",
	} {
		code, proto, err := post(tlsClient, url, `{"flagKey":"new-checkout","context":{}}`)
		if err != nil || code != http.StatusOK {
			t.Errorf("%s over TLS: status %d, %v", url, code, err)
		}
		if strings.Contains(url, "evaluation") && proto != "HTTP/2.0" {
			t.Errorf("evaluation over TLS negotiated %s, want HTTP/2.0 (gRPC needs it)", proto)
		}
		plain := strings.Replace(url, "https://", "http://", 1)
		if code, _, err := post(http.DefaultClient, plain, `{}`); err == nil && code == http.StatusOK {
			t.Errorf("%s answered over plaintext", plain)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// clientCert issues a client certificate from a CA of its own and returns the CA
// file and the certificate for a TLS client.
func clientCert(t *testing.T) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "clients"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: "app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "clients.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestFlagdRequiresClientCertificate: with --client-ca-path the TLS listeners refuse
// a client without a certificate of that CA (mutual TLS).
func TestFlagdRequiresClientCertificate(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	caFile, cert := clientCert(t)
	c, err := parseStart(t, "-f", "file:"+examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0",
		"--bind-address", "127.0.0.1", "-c", certFile, "-k", keyFile, "--ofrep-tls", "--client-ca-path", caFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, zerolog.Nop(), BuildInfo{}, func(a Addresses) { addrs <- a }) }()
	a := <-addrs
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitReady(t, "http://"+a.Management+"/readyz")
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}, ForceAttemptHTTP2: true}}
	}
	for _, url := range []string{"https://" + a.Evaluation + "/flagd.evaluation.v2.Service/ResolveBoolean", "https://" + a.OFREP + "/ofrep/v1/evaluate/flags/new-checkout"} {
		if resp, err := client().Post(url, "application/json", strings.NewReader(`{"flagKey":"new-checkout","context":{}}`)); err == nil {
			resp.Body.Close()
			t.Errorf("%s answered %d to a client without a certificate", url, resp.StatusCode)
		}
		resp, err := client(cert).Post(url, "application/json", strings.NewReader(`{"flagKey":"new-checkout","context":{}}`))
		if err != nil {
			t.Fatalf("%s with a client certificate: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with a client certificate: %d", url, resp.StatusCode)
		}
	}
}
