package grpcsource

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/flags"
	"github.com/flagpole-dev/flagpole/flagd/service/syncserver"
	"github.com/flagpole-dev/flagpole/flagd/store"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	"github.com/flagpole-dev/flagpole/sync/sourcetest"
)

// waitFor bounds every wait for an update (longer than sourcetest.DefaultWait: TLS
// handshakes and reconnections); waits block, they never assert timing.
const waitFor = 15 * time.Second

const (
	upA  = "upstream-a.json"
	upB  = "upstream-b.json"
	docA = `{"metadata": {"flagSetId": "set-a"}, "flags": {"a1": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}`
	docB = `{"metadata": {"flagSetId": "set-b"}, "flags": {"b1": {"state": "ENABLED", "variants": {"x": "X", "y": "Y"}, "defaultVariant": "x"}}}`
	// docA2 changes a1's default variant.
	docA2 = `{"metadata": {"flagSetId": "set-a"}, "flags": {"a1": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}`
)

// upstream is a live flagpole sync server (flagd/service/syncserver) over a store.
type upstream struct {
	st   *store.Store
	addr string
	tls  *tls.Config
	mu   sync.Mutex
	stop func()
}

// newUpstream starts a sync server on a free 127.0.0.1 port with docA and docB.
func newUpstream(t *testing.T, serverTLS *tls.Config) *upstream {
	t.Helper()
	st, err := store.New([]string{upA, upB}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for src, doc := range map[string]string{upA: docA, upB: docB} {
		if err := st.Apply(src, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	u := &upstream{st: st, tls: serverTLS}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	u.serve(t, ln)
	t.Cleanup(u.shutdown)
	return u
}

// serve serves on ln until shutdown.
func (u *upstream) serve(t *testing.T, ln net.Listener) {
	t.Helper()
	srv := syncserver.New(syncserver.Options{Store: u.st, Log: zerolog.Nop(), TLS: u.tls})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	u.mu.Lock()
	u.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sync server: %v", err)
		}
	}
	u.mu.Unlock()
}

// shutdown stops the server (ending its streams with Unavailable).
func (u *upstream) shutdown() {
	u.mu.Lock()
	stop := u.stop
	u.stop = nil
	u.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// restart serves again on the same address.
func (u *upstream) restart(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", u.addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", u.addr, err)
	}
	u.serve(t, ln)
}

// newSource builds a source with short reconnect waits.
func newSource(t *testing.T, cfg flagsync.SourceConfig) *Source {
	t.Helper()
	cfg.Provider = flagsync.ProviderGRPC
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.minBackoff, s.maxBackoff = 5*time.Millisecond, 50*time.Millisecond
	return s
}

// run runs s until the test ends and returns its updates, waiting up to waitFor.
func run(t *testing.T, s *Source) *sourcetest.Updates {
	t.Helper()
	out := sourcetest.Run(t, s)
	out.Wait = waitFor
	return out
}

// recvData skips error updates until a document arrives and returns its flags as
// key → defaultVariant, checking that it parses without warnings.
func recvData(t *testing.T, out *sourcetest.Updates) map[string]string {
	t.Helper()
	for {
		u := out.Next()
		if u.Err != nil {
			continue
		}
		return flagsOf(t, u.Data)
	}
}

func flagsOf(t *testing.T, data []byte) map[string]string {
	t.Helper()
	set, err := flags.Parse(data, flags.Lenient)
	if err != nil {
		t.Fatalf("the payload does not parse: %v\n%s", err, data)
	}
	if len(set.Warnings) > 0 {
		t.Errorf("the payload has warnings %v:\n%s", set.Warnings, data)
	}
	got := map[string]string{}
	for _, f := range set.Flags {
		got[f.Key] = f.DefaultVariant
	}
	return got
}

func TestPayloadsAndUpdates(t *testing.T) {
	up := newUpstream(t, nil)
	s := newSource(t, flagsync.SourceConfig{URI: up.addr}) // as --uri grpc://addr is parsed
	if s.Name() != up.addr {
		t.Errorf("Name = %q, want %q", s.Name(), up.addr)
	}
	out := run(t, s)
	if diff := cmp.Diff(map[string]string{"a1": "on", "b1": "x"}, recvData(t, out)); diff != "" {
		t.Errorf("initial payload (-want +got):\n%s", diff)
	}
	if err := up.st.Apply(upA, []byte(docA2)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a1": "off", "b1": "x"}, recvData(t, out)); diff != "" {
		t.Errorf("after Apply (-want +got):\n%s", diff)
	}
}

func TestSelector(t *testing.T) {
	up := newUpstream(t, nil)
	out := run(t, newSource(t, flagsync.SourceConfig{URI: "grpc://" + up.addr, Selector: "flagSetId=set-b", ProviderID: "downstream-1"}))
	if diff := cmp.Diff(map[string]string{"b1": "x"}, recvData(t, out)); diff != "" {
		t.Errorf("selected payload (-want +got):\n%s", diff)
	}
}

// TestReconnect stops the server after the first payload and restarts it on the same
// port: the stream failure is an error update, and the next payload is delivered
// again even though it did not change (so the store clears the error).
func TestReconnect(t *testing.T) {
	up := newUpstream(t, nil)
	s := newSource(t, flagsync.SourceConfig{URI: up.addr})
	st, err := store.New([]string{s.Name()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, s)
	apply := func(u flagsync.Update) {
		if u.Err != nil {
			st.Fail(u.Source, u.Err)
		} else if err := st.Apply(u.Source, u.Data); err != nil {
			t.Fatal(err)
		}
	}
	u := out.Next()
	apply(u)
	if !st.Ready() {
		t.Fatalf("not ready after the first update (err %v)", u.Err)
	}
	up.shutdown()
	u = out.Next()
	if u.Err == nil || !strings.Contains(u.Err.Error(), "grpc source "+up.addr+": SyncFlags stream: Unavailable: server shutting down") {
		t.Fatalf("after shutdown: update err = %v", u.Err)
	}
	apply(u)
	up.restart(t)
	for {
		u := out.Next()
		apply(u)
		if u.Err == nil {
			break
		}
	}
	status := st.Status()[0]
	if status.LastError != "" || status.Applied != 2 || status.Failures == 0 {
		t.Errorf("after reconnecting: %+v, want the error cleared, 2 payloads applied and failures counted", status)
	}
	if err := up.st.Apply(upB, []byte(`{"metadata": {"flagSetId": "set-b"}, "flags": {}}`)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a1": "on"}, recvData(t, out)); diff != "" {
		t.Errorf("update after reconnecting (-want +got):\n%s", diff)
	}
}

// TestInitialFailure starts the source before its server exists: it reports errors
// and keeps trying, then syncs once the server is up.
func TestInitialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	out := run(t, newSource(t, flagsync.SourceConfig{URI: addr}))
	out.Err("grpc source " + addr + ": opening the SyncFlags stream: Unavailable")
	out.Err("Unavailable")

	up := &upstream{addr: addr}
	st, err := store.New([]string{upA}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(upA, []byte(docA)); err != nil {
		t.Fatal(err)
	}
	up.st = st
	up.restart(t)
	t.Cleanup(up.shutdown)
	if diff := cmp.Diff(map[string]string{"a1": "on"}, recvData(t, out)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// testCA returns a server TLS config for 127.0.0.1 and the path of its CA file.
func testCA(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flagpole grpc source test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, caFile
}

func TestTLS(t *testing.T) {
	serverTLS, caFile := testCA(t)
	up := newUpstream(t, serverTLS)
	t.Run("grpcs with certPath", func(t *testing.T) {
		cfg, err := flagsync.ParseURI("grpcs://" + up.addr)
		if err != nil {
			t.Fatal(err)
		}
		cfg.CertPath = caFile
		out := run(t, newSource(t, cfg))
		if diff := cmp.Diff(map[string]string{"a1": "on", "b1": "x"}, recvData(t, out)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("tls field with certPath", func(t *testing.T) {
		out := run(t, newSource(t, flagsync.SourceConfig{URI: up.addr, TLS: true, CertPath: caFile}))
		recvData(t, out)
	})
	t.Run("system roots only", func(t *testing.T) {
		out := run(t, newSource(t, flagsync.SourceConfig{URI: "grpcs://" + up.addr}))
		out.Err("certificate signed by unknown authority")
	})
	t.Run("plaintext client", func(t *testing.T) {
		out := run(t, newSource(t, flagsync.SourceConfig{URI: up.addr}))
		out.Err("Unavailable")
	})
}

// TestTLSRootsFollowCertPath: the CA bundle at certPath is read again for every
// connection (the operator rotates the flagd-proxy's CA through a mounted
// ConfigMap): after the server moves to a certificate of another CA and the file
// is rewritten, the source reconnects trusting the new CA; a file that then turns
// unreadable keeps the CAs read last.
func TestTLSRootsFollowCertPath(t *testing.T) {
	first, firstCA := testCA(t)
	second, secondCA := testCA(t)
	up := newUpstream(t, first)
	certPath := filepath.Join(t.TempDir(), "ca.crt")
	copyFile(t, firstCA, certPath)
	out := run(t, newSource(t, flagsync.SourceConfig{URI: up.addr, TLS: true, CertPath: certPath}))
	recvData(t, out)

	// the server's certificate now comes from a CA the file does not hold yet
	up.shutdown()
	up.tls = second
	up.restart(t)
	for u := out.Next(); u.Err == nil || !strings.Contains(u.Err.Error(), "certificate signed by unknown authority"); u = out.Next() {
		if u.Err == nil {
			t.Fatal("flags from a server whose CA certPath does not hold")
		}
	}
	copyFile(t, secondCA, certPath)
	untilData(out)

	// an unusable file: the second CA, read last, is still trusted
	if err := os.WriteFile(certPath, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	up.shutdown()
	up.restart(t)
	untilData(out)
}

// untilData skips the source's errors until it delivers flags (reconnected).
func untilData(out *sourcetest.Updates) {
	for {
		if u := out.Next(); u.Err == nil {
			return
		}
	}
}

// copyFile copies src to dst.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "fp") //nolint:usetesting // short: socket paths are limited to ~100 bytes, t.TempDir's holds the test name
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sync.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New([]string{upA}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(upA, []byte(docA)); err != nil {
		t.Fatal(err)
	}
	up := &upstream{st: st, addr: sock}
	up.serve(t, ln)
	t.Cleanup(up.shutdown)
	for _, uri := range []string{"unix://" + sock, "unix:" + sock, "uds://" + sock} {
		t.Run(uri, func(t *testing.T) {
			cfg := flagsync.SourceConfig{URI: uri, AuthHeader: "Bearer over-a-local-socket"}
			if strings.HasPrefix(uri, "uds") {
				var err error
				if cfg, err = flagsync.ParseURI(uri); err != nil {
					t.Fatal(err)
				}
			}
			out := run(t, newSource(t, cfg))
			if diff := cmp.Diff(map[string]string{"a1": "on"}, recvData(t, out)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// recorder is a minimal sync server that records what clients send and answers
// with scripted payloads.
type recorder struct {
	syncv1grpc.UnimplementedFlagSyncServiceServer
	payloads []string
	// end makes every stream end after its payloads (the client reconnects).
	end      bool
	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	ProviderID, BodySelector string
	Header                   map[string][]string
}

func (r *recorder) SyncFlags(req *syncv1.SyncFlagsRequest, stream grpc.ServerStreamingServer[syncv1.SyncFlagsResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	h := map[string][]string{}
	for _, k := range []string{"flagd-selector", "authorization", "x-team"} {
		if v := md.Get(k); v != nil {
			h[k] = v
		}
	}
	r.mu.Lock()
	r.requests = append(r.requests, recorded{ProviderID: req.GetProviderId(), BodySelector: req.GetSelector(), Header: h}) // the deprecated body selector is what we check
	r.mu.Unlock()
	for _, p := range r.payloads {
		if err := stream.Send(&syncv1.SyncFlagsResponse{FlagConfiguration: p}); err != nil {
			return err
		}
	}
	if !r.end {
		<-stream.Context().Done()
	}
	return nil
}

func startRecorder(t *testing.T, r *recorder) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	syncv1grpc.RegisterFlagSyncServiceServer(srv, r)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// TestRequestAndDeduplication checks what the client sends (provider id, selector in
// the body and the Flagd-Selector header, custom headers, credentials from a file)
// and that an identical payload is not delivered twice.
func TestRequestAndDeduplication(t *testing.T) {
	withSource := func(doc string) string { // as the sync API renders flags
		return strings.Replace(doc, `"defaultVariant"`, `"source": "elsewhere.json", "defaultVariant"`, 1)
	}
	r := &recorder{payloads: []string{withSource(docA), withSource(docA), withSource(docA2)}}
	addr := startRecorder(t, r)
	authFile := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(authFile, []byte("Bearer from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := run(t, newSource(t, flagsync.SourceConfig{URI: addr, ProviderID: "pod-7", Selector: "flagSetId=set-a",
		Headers: map[string]string{"X-Team": "core"}, AuthHeaderFile: authFile}))
	first := out.NextData()
	if strings.Contains(string(first), `"source"`) {
		t.Errorf("the upstream's source member was not removed: %s", first)
	}
	if diff := cmp.Diff(map[string]string{"a1": "on"}, flagsOf(t, first)); diff != "" {
		t.Errorf("first (-want +got):\n%s", diff)
	}
	// The identical second payload is skipped: the next update is the third.
	if diff := cmp.Diff(map[string]string{"a1": "off"}, flagsOf(t, out.Next().Data)); diff != "" {
		t.Errorf("second update (-want +got):\n%s", diff)
	}
	r.mu.Lock()
	got := r.requests
	r.mu.Unlock()
	want := []recorded{{ProviderID: "pod-7", BodySelector: "flagSetId=set-a", Header: map[string][]string{
		"flagd-selector": {"flagSetId=set-a"}, "authorization": {"Bearer from-file"}, "x-team": {"core"}}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestBearerTokenFileRotation: a bearerTokenFile's token is sent as
// "authorization: Bearer <token>" metadata and re-read for every stream, so a
// rotated token (the kubelet rewrites a projected ServiceAccount token) is sent on
// the next connection without a restart.
func TestBearerTokenFileRotation(t *testing.T) {
	r := &recorder{payloads: []string{docA}, end: true}
	addr := startRecorder(t, r)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := run(t, newSource(t, flagsync.SourceConfig{URI: addr, Selector: "core.openfeature.dev/ns/flags", BearerTokenFile: tokenFile}))
	out.NextData()
	tokens := func() []string {
		r.mu.Lock()
		defer r.mu.Unlock()
		var got []string
		for _, req := range r.requests {
			got = append(got, req.Header["authorization"]...)
		}
		return got
	}
	if got := tokens(); len(got) == 0 || got[0] != "Bearer first-token" {
		t.Fatalf("authorization metadata %q, want Bearer first-token", got)
	}
	if err := os.WriteFile(tokenFile, []byte("rotated-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitFor)
	for !slices.Contains(tokens(), "Bearer rotated-token") {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated token was never sent; sent %q", tokens())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMaxMsgSize(t *testing.T) {
	up := newUpstream(t, nil)
	out := run(t, newSource(t, flagsync.SourceConfig{URI: up.addr, MaxMsgSize: 64}))
	out.Err("ResourceExhausted: grpc: received message larger than max (")
	out.Err("(raise maxMsgSize to allow larger flag configurations)")
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("t0ken"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cfg     flagsync.SourceConfig
		wantErr string
	}{
		"envoy":         {cfg: flagsync.SourceConfig{URI: "envoy://localhost:9211/flagd-sync.svc"}, wantErr: "grpc source envoy://localhost:9211/flagd-sync.svc: uri: envoy targets are not supported by flagpole"},
		"xds":           {cfg: flagsync.SourceConfig{URI: "xds:///flagd"}, wantErr: "grpc source xds:///flagd: uri: xds targets are not supported"},
		"no port":       {cfg: flagsync.SourceConfig{URI: "flagd"}, wantErr: `grpc source flagd: uri: want host:port, got "flagd"`},
		"empty":         {cfg: flagsync.SourceConfig{URI: "grpc://"}, wantErr: "grpc source grpc://: uri: no host:port"},
		"certPath":      {cfg: flagsync.SourceConfig{URI: "flagd:8015", CertPath: "/ca.pem"}, wantErr: `grpc source flagd:8015: certPath: needs TLS: use grpcs://, or "tls": true`},
		"missing CA":    {cfg: flagsync.SourceConfig{URI: "grpcs://flagd:8015", CertPath: filepath.Join(dir, "ca.pem")}, wantErr: "grpc source grpcs://flagd:8015: certPath: open"},
		"incremental":   {cfg: flagsync.SourceConfig{URI: "flagd:8015", IncrementalUpdates: true}, wantErr: "grpc source flagd:8015: incrementalUpdates: not supported"},
		"oauth":         {cfg: flagsync.SourceConfig{URI: "flagd:8015", OAuth: &flagsync.OAuth{TokenURL: "https://t", Folder: "/o"}}, wantErr: "grpc source flagd:8015: oauth: only http sources use it"},
		"auth in clear": {cfg: flagsync.SourceConfig{URI: "flagd:8015", AuthHeader: "Bearer x"}, wantErr: `grpc source flagd:8015: the Authorization header would travel unencrypted: use grpcs://, or set "allowInsecure": true`},
		"env unset":     {cfg: flagsync.SourceConfig{URI: "grpcs://flagd:8015", AuthHeaderEnv: "FLAGPOLE_GRPC_TEST_UNSET"}, wantErr: "grpc source grpcs://flagd:8015: authHeaderEnv: environment variable FLAGPOLE_GRPC_TEST_UNSET is not set"},
		"bad header":    {cfg: flagsync.SourceConfig{URI: "flagd:8015", Headers: map[string]string{"a b": "c"}}, wantErr: `grpc source flagd:8015: headers: "a b" is not a valid header name`},
		"token in clear": {cfg: flagsync.SourceConfig{URI: "flagd:8015", BearerTokenFile: tokenFile},
			wantErr: `grpc source flagd:8015: the Authorization header would travel unencrypted: use grpcs://, or set "allowInsecure": true`},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.Provider = flagsync.ProviderGRPC
			_, err := New(tc.cfg, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	if err := Check(flagsync.SourceConfig{URI: "flagd:8015", Provider: flagsync.ProviderGRPC, BearerTokenFile: tokenFile}); err == nil {
		t.Error("Check accepts a bearerTokenFile over plaintext")
	}
	for _, ok := range []flagsync.SourceConfig{
		{URI: "dns:///flagd.example.com:8015"},
		{URI: "dns:flagd:8015"},
		{URI: "grpc://flagd:8015"},
		{URI: "[::1]:8015", AuthHeader: "Bearer local"},
		{URI: "localhost:8015", AuthHeader: "Bearer local"},
		{URI: "flagd:8015", AuthHeader: "Bearer x", AllowInsecure: true},
		{URI: "flagd:8015", TLS: true, AuthHeader: "Bearer x"},
		{URI: "unix:///run/flagd.sock"},
		{URI: "flagd-proxy:8015", BearerTokenFile: tokenFile, AllowInsecure: true},
	} {
		ok.Provider = flagsync.ProviderGRPC
		if _, err := New(ok, zerolog.Nop()); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// TestCheckIsNewWithoutFiles: Check refuses what New refuses, with the same
// message after New's "grpc source <uri>: " prefix, for everything that reads no file
// and no environment variable; what New accepts, Check accepts.
func TestCheckIsNewWithoutFiles(t *testing.T) {
	for _, cfg := range []flagsync.SourceConfig{
		{URI: "envoy://localhost:9211/flagd-sync.svc"},
		{URI: "xds:///flagd"},
		{URI: "flagd"},
		{URI: "grpc://"},
		{URI: "flagd:8015", CertPath: "/ca.pem"},
		{URI: "flagd:8015", IncrementalUpdates: true},
		{URI: "flagd:8015", OAuth: &flagsync.OAuth{TokenURL: "https://t", Folder: "/o"}},
		{URI: "flagd:8015", AuthHeader: "Bearer x"},
		{URI: "flagd:8015", Headers: map[string]string{"a b": "c"}},
		{URI: "flagd:8015", Interval: 86401},
		{URI: ""},
		{URI: "dns:///flagd.example.com:8015"},
		{URI: "grpc://flagd:8015"},
		{URI: "[::1]:8015", AuthHeader: "Bearer local"},
		{URI: "flagd:8015", AuthHeader: "Bearer x", AllowInsecure: true},
		{URI: "flagd:8015", TLS: true, AuthHeader: "Bearer x"},
		{URI: "unix:///run/flagd.sock"},
	} {
		cfg.Provider = flagsync.ProviderGRPC
		_, newErr := New(cfg, zerolog.Nop())
		checkErr := Check(cfg)
		switch {
		case newErr == nil && checkErr == nil:
		case newErr == nil || checkErr == nil:
			t.Errorf("%+v: New: %v, Check: %v", cfg, newErr, checkErr)
		default:
			if want := fmt.Sprintf("grpc source %s: %s", cfg.URI, checkErr); newErr.Error() != want {
				t.Errorf("%+v:\n   New: %v\n Check: %s", cfg, newErr, want)
			}
		}
	}
}

func TestParseTarget(t *testing.T) {
	type result struct {
		Target        string
		Secure, Local bool
	}
	got := map[string]result{}
	for _, uri := range []string{"flagd:8015", "grpc://flagd:8015", "grpcs://flagd:8015", "GRPCS://127.0.0.1:8015", "dns:///localhost:8015",
		"dns://8.8.8.8/flagd:8015", "uds:///run/s.sock", "unix:/run/s.sock", "[::1]:1"} {
		target, secure, local, err := parseTarget(uri)
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		got[uri] = result{target, secure, local}
	}
	want := map[string]result{
		"flagd:8015":               {"flagd:8015", false, false},
		"grpc://flagd:8015":        {"flagd:8015", false, false},
		"grpcs://flagd:8015":       {"flagd:8015", true, false},
		"GRPCS://127.0.0.1:8015":   {"127.0.0.1:8015", true, true},
		"dns:///localhost:8015":    {"dns:///localhost:8015", false, true},
		"dns://8.8.8.8/flagd:8015": {"dns://8.8.8.8/flagd:8015", false, false},
		"uds:///run/s.sock":        {"unix:///run/s.sock", false, true},
		"unix:/run/s.sock":         {"unix:/run/s.sock", false, true},
		"[::1]:1":                  {"[::1]:1", false, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestStripSource(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"sync payload": {
			in:   `{"flags":{"b":{"state":"ENABLED","source":"x","variants":{"v":1.50}},"a":{"source":"y","state":"DISABLED"}}}`,
			want: `{"flags":{"a":{"state":"DISABLED"},"b":{"state":"ENABLED","variants":{"v":1.50}}}}`,
		},
		"no source members":   {in: `{"flags": {"a": {"state": "ENABLED"}}}`, want: `{"flags": {"a": {"state": "ENABLED"}}}`},
		"array form":          {in: `{"flags": [{"key": "a", "source": "x"}]}`, want: `{"flags": [{"key": "a", "source": "x"}]}`},
		"not JSON":            {in: "flags:\n  a: {}\n", want: "flags:\n  a: {}\n"},
		"top-level kept":      {in: `{"metadata":{"source":"m"},"flags":{"a":{"source":"s"}}}`, want: `{"flags":{"a":{}},"metadata":{"source":"m"}}`},
		"flags not an object": {in: `{"flags": null}`, want: `{"flags": null}`},
	} {
		t.Run(name, func(t *testing.T) {
			if got := string(stripSource([]byte(tc.in))); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			var v any
			if json.Valid([]byte(tc.in)) && json.Unmarshal(stripSource([]byte(tc.in)), &v) != nil {
				t.Error("the result is not JSON")
			}
		})
	}
}

func TestJitter(t *testing.T) {
	var out []time.Duration
	for range 100 {
		d := jitter(time.Second)
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jitter(1s) = %s", d)
		}
		out = append(out, d)
	}
	slices.Sort(out)
	if out[0] == out[len(out)-1] {
		t.Error("jitter is constant")
	}
}

// deepUpstream sends one response whose sync_context nests 4,000 levels (8,000
// messages: within protobuf-go's default limit).
type deepUpstream struct {
	syncv1grpc.UnimplementedFlagSyncServiceServer
}

func (deepUpstream) SyncFlags(_ *syncv1.SyncFlagsRequest, stream grpc.ServerStreamingServer[syncv1.SyncFlagsResponse]) error {
	v := structpb.NewNumberValue(1)
	for range 4000 {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
	}
	ctx := &structpb.Struct{Fields: map[string]*structpb.Value{"x": v}}
	if err := stream.Send(&syncv1.SyncFlagsResponse{FlagConfiguration: docA, SyncContext: ctx}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// TestDeepResponseRefused: a response nesting its sync_context deeper than
// protolimit allows is refused without being decoded (protobuf-go alone decodes it,
// with a stack of megabytes) and reported as a source error.
func TestDeepResponseRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	syncv1grpc.RegisterFlagSyncServiceServer(srv, deepUpstream{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	out := run(t, newSource(t, flagsync.SourceConfig{URI: ln.Addr().String()}))
	out.Err("nested too deeply")
}
