package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given common name.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestCertReloaderPicksUpRotation serves TLS, rotates the files, and checks that a
// new handshake presents the new certificate without a restart.
func TestCertReloaderPicksUpRotation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "first")
	r, err := NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	r.now = func() time.Time { return clock }
	ln, err := Listen(ListenConfig{Name: "test", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := ListenConfig{Name: "test", TLS: r.TLSConfig()}
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, cfg, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), zerolog.Nop(), nil)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	peer := func() string {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true}) // the test reads the presented certificate
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := peer(); got != "first" {
		t.Fatalf("first handshake presented %q", got)
	}
	// rotate: new files with a later modification time
	writeCert(t, dir, "second")
	later := time.Now().Add(2 * time.Second)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	clock = clock.Add(2 * time.Second) // past the once-a-second check
	if got := peer(); got != "second" {
		t.Fatalf("after rotation the handshake presented %q, want second", got)
	}
	// a broken rotation keeps the last good certificate
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	even := time.Now().Add(4 * time.Second)
	_ = os.Chtimes(certFile, even, even)
	clock = clock.Add(2 * time.Second)
	if got := peer(); got != "second" {
		t.Fatalf("after a broken rotation the handshake presented %q, want second", got)
	}
	if _, err := NewCertReloader(filepath.Join(dir, "missing.crt"), keyFile); err == nil {
		t.Error("missing certificate accepted")
	}
}

// TestCertReloaderFollowsDataSymlinkSwap rotates the files the way the kubelet
// updates a Secret volume: the new pair is written into a new directory and the
// `..data` symlink is swapped to it atomically; tls.crt and tls.key are symlinks
// through `..data`. The new files keep the old modification times, so only a
// comparison of contents sees the change.
func TestCertReloaderFollowsDataSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "..2026_01_01_first"), filepath.Join(dir, "..2026_01_02_second")
	for _, d := range []string{first, second} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeCert(t, first, "first")
	writeCert(t, second, "second")
	stamp := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, d := range []string{first, second} {
		for _, f := range []string{"tls.crt", "tls.key"} {
			if err := os.Chtimes(filepath.Join(d, f), stamp, stamp); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Symlink(filepath.Base(first), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Certificate().Leaf.Subject.CommonName; got != "first" {
		t.Fatalf("loaded %q, want first", got)
	}
	if changed, err := r.Reload(); changed || err != nil {
		t.Fatalf("Reload without a change = %v, %v; want false, nil", changed, err)
	}
	// the kubelet's swap: a new symlink renamed over ..data
	if err := os.Symlink(filepath.Base(second), filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload after the swap = %v, %v; want true, nil", changed, err)
	}
	if got := r.Certificate().Leaf.Subject.CommonName; got != "second" {
		t.Fatalf("after the ..data swap the reloader serves %q, want second", got)
	}
}

func TestListenRemovesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flagd.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil { // left over by a crashed process
		t.Fatal(err)
	}
	ln, err := Listen(ListenConfig{Name: "test", SocketPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, ListenConfig{Name: "test", SocketPath: path}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("ok"))
		}), zerolog.Nop(), nil)
	}()
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := client.Get("http://unix/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left behind after shutdown: %v", err)
	}
}
