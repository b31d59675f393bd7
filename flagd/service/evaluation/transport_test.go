package evaluation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/evaluation/v1/evaluationv1grpc"
	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/evaluation/v2/evaluationv2grpc"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	"connectrpc.com/connect"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 to dir and returns the
// file paths and a pool trusting it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "flagpole test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
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
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// grpcBoolV2 resolves a boolean with a grpc-go client.
func grpcBoolV2(t *testing.T, conn *grpc.ClientConn, key, selector string) outcome {
	t.Helper()
	ctx := testContext(t)
	if selector != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "flagd-selector", selector)
	}
	r, err := evaluationv2grpc.NewServiceClient(conn).ResolveBoolean(ctx, &evalv2.ResolveBooleanRequest{FlagKey: key, Context: &structpb.Struct{}})
	if err != nil {
		st, _ := status.FromError(err)
		return outcome{Code: st.Code().String(), Message: st.Message()}
	}
	o := outcome{Reason: r.Reason, Variant: r.GetVariant(), Metadata: r.Metadata.AsMap()}
	if r.Value != nil {
		o.Value = *r.Value
	}
	return o
}

func grpcConn(t *testing.T, target string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestGRPCGoClients uses the grpc-go generated clients over h2c, as the Go, Java
// and other SDK providers do in rpc mode.
func TestGRPCGoClients(t *testing.T) {
	srv := start(t, Options{}, server.ListenConfig{})
	conn := grpcConn(t, srv.ln.Addr().String(), insecure.NewCredentials())
	mdA := map[string]any{"flagSetId": "set-a", "team": "core"}
	tests := []struct {
		name     string
		key, sel string
		want     outcome
	}{
		{"static", "plain", "", outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: map[string]any{}}},
		{"code default", "no-default", "", outcome{Reason: "DEFAULT", Metadata: mdA}},
		{"disabled", "disabled", "", outcome{Reason: "DISABLED", Metadata: mdA}},
		{"selector", "b-only", "flagSetId=set-b", outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: map[string]any{"flagSetId": "set-b"}}},
		{"type mismatch", "string-flag", "", outcome{Code: codes.InvalidArgument.String(), Message: "Type mismatch error"}},
		{"not found", "missing", "", outcome{Code: codes.NotFound.String(), Message: "Flag not found"}},
		{"parse error", "parse-error", "", outcome{Code: codes.DataLoss.String(), Message: "Error parsing input or configuration"}},
		{"general", "general-error", "", outcome{Code: codes.Unknown.String(), Message: "General error"}},
		{"invalid selector", "plain", "x=1", outcome{Code: codes.InvalidArgument.String(), Message: `invalid selector key "x", valid keys: "flagSetId", "source"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, grpcBoolV2(t, conn, tc.key, tc.sel)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("v1 int and code default", func(t *testing.T) {
		c := evaluationv1grpc.NewServiceClient(conn)
		r, err := c.ResolveInt(testContext(t), &evalv1.ResolveIntRequest{FlagKey: "int-flag"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]any{int64(10), "DEFAULT", "ten"}, []any{r.Value, r.Reason, r.Variant}); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		_, err = c.ResolveBoolean(testContext(t), &evalv1.ResolveBooleanRequest{FlagKey: "no-default"})
		if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "Flag not found" {
			t.Errorf("v1 code default: %v, want NotFound \"Flag not found\"", err)
		}
	})

	t.Run("event stream", func(t *testing.T) {
		stream, err := evaluationv2grpc.NewServiceClient(conn).EventStream(testContext(t), &evalv2.EventStreamRequest{})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ready(), event{Type: first.Type, Data: first.Data.AsMap()}); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if err := srv.st.Apply("src-plain", []byte(`{"flags": {}}`)); err != nil {
			t.Fatal(err)
		}
		next, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(changed(map[string]string{"plain": "delete"}), event{Type: next.Type, Data: next.Data.AsMap()}); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// TestTLS serves with a certificate loaded by server.NewCertReloader (as
// --server-cert-path/--server-key-path do) and calls it with clients that trust it.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	reloader, err := server.NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, Options{}, server.ListenConfig{TLS: reloader.TLSConfig()})
	clientTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hc := tlsClient(t, clientTLS)
	want := outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: map[string]any{}}
	for _, p := range protocols() {
		t.Run("connect-go "+p.name, func(t *testing.T) {
			c := evaluationv2connect.NewServiceClient(hc, srv.url, p.opts...)
			if diff := cmp.Diff(want, callV2(testContext(t), t, c, "bool", "plain", nil, nil)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("grpc-go", func(t *testing.T) {
		conn := grpcConn(t, srv.ln.Addr().String(), credentials.NewTLS(clientTLS))
		if diff := cmp.Diff(want, grpcBoolV2(t, conn, "plain", "")); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("untrusted client is refused", func(t *testing.T) {
		c := evaluationv2connect.NewServiceClient(tlsClient(t, &tls.Config{MinVersion: tls.VersionTLS12}), srv.url)
		_, err := c.ResolveBoolean(testContext(t), connect.NewRequest(&evalv2.ResolveBooleanRequest{FlagKey: "plain"}))
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("err = %v, want a TLS failure (unavailable)", err)
		}
	})
}

// TestUnixSocket serves on --socket-path and calls it with connect-go and grpc-go.
func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "fp-eval") //nolint:usetesting // short: unix socket paths are limited to ~100 bytes, t.TempDir's holds the test name
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "eval.sock")
	srv := start(t, Options{}, server.ListenConfig{SocketPath: path})
	want := outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: map[string]any{}}
	hc := unixClient(t, path)
	for _, p := range protocols() {
		t.Run("connect-go "+p.name, func(t *testing.T) {
			c := evaluationv1connect.NewServiceClient(hc, srv.url, p.opts...)
			if diff := cmp.Diff(want, callV1(testContext(t), t, c, "bool", "plain", nil, nil)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("grpc-go", func(t *testing.T) {
		conn := grpcConn(t, "unix://"+path, insecure.NewCredentials())
		if diff := cmp.Diff(want, grpcBoolV2(t, conn, "plain", "")); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}
