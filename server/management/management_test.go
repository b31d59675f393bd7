package management_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/management"
)

// serve runs h with server.Serve on 127.0.0.1:0 until the test ends and returns the address.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	cfg := server.ListenConfig{Name: "management", Address: "127.0.0.1:0", ReadHeaderTimeout: 3 * time.Second}
	ln, err := server.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, ln, cfg, h, zerolog.Nop(), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().(*net.TCPAddr).String()
}

type response struct {
	Status      int
	ContentType string
	Body        string
}

func get(t *testing.T, url string) response {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header.Get("Content-Type"), string(b)}
}

func healthClient(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func check(t *testing.T, c healthpb.HealthClient, svc string) (healthpb.HealthCheckResponse_ServingStatus, codes.Code) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, status.Code(err)
	}
	return res.GetStatus(), codes.OK
}

// TestReadyFuncAndReport: readiness comes from the Ready function, a 412 carries
// the NotReady body, a Watch stream is woken by the Watch function, and shutdown
// overrides everything.
func TestReadyFuncAndReport(t *testing.T) {
	var ready atomic.Bool
	changes := make(chan struct{}, 1)
	mgmt := management.New(management.Options{
		Ready:    ready.Load,
		NotReady: func() any { return map[string]any{"reason": "webhook certificate", "checks": []string{"tls"}} },
		Watch:    func() (<-chan struct{}, func()) { return changes, func() {} },
		Log:      zerolog.Nop(),
	})
	addr := serve(t, mgmt.Handler())
	client := healthClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	next := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		res, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		return res.GetStatus()
	}
	type state struct {
		Healthz, Readyz response
		Health, Watched healthpb.HealthCheckResponse_ServingStatus
	}
	observe := func() state {
		s := state{Healthz: get(t, "http://"+addr+"/healthz"), Readyz: get(t, "http://"+addr+"/readyz"), Watched: next()}
		s.Health, _ = check(t, client, "")
		return s
	}
	ok := response{200, "", ""}
	want := state{ok, response{412, "application/json", `{"checks":["tls"],"reason":"webhook certificate"}`},
		healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_NOT_SERVING}
	if diff := cmp.Diff(want, observe()); diff != "" {
		t.Fatalf("not ready (-want +got):\n%s", diff)
	}
	ready.Store(true)
	changes <- struct{}{}
	want = state{ok, ok, healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_SERVING}
	if diff := cmp.Diff(want, observe()); diff != "" {
		t.Fatalf("ready (-want +got):\n%s", diff)
	}
	mgmt.ShuttingDown()
	want = state{ok, response{412, "application/json", `{"reason":"shutting down"}`},
		healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_NOT_SERVING}
	if diff := cmp.Diff(want, observe()); diff != "" {
		t.Fatalf("shutting down (-want +got):\n%s", diff)
	}
	if _, code := check(t, client, "flagd.evaluation.v1.Service"); code != codes.NotFound {
		t.Errorf("Check of a named service: %v, want NotFound", code)
	}
}

func TestWithoutOptionalParts(t *testing.T) {
	mgmt := management.New(management.Options{Log: zerolog.Nop()})
	addr := serve(t, mgmt.Handler())
	if got := get(t, "http://"+addr+"/readyz"); got != (response{200, "", ""}) {
		t.Errorf("readyz without a Ready func: %+v", got)
	}
	if got := get(t, "http://"+addr+"/metrics"); got.Status != 404 {
		t.Errorf("metrics without a gatherer: %+v", got)
	}
	client := healthClient(t, addr)
	if got, code := check(t, client, ""); got != healthpb.HealthCheckResponse_SERVING || code != codes.OK {
		t.Errorf("Check: %v %v", got, code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Watch without a store watch: %v, want Unimplemented", err)
	}
}

func TestNotReadyWithoutReport(t *testing.T) {
	mgmt := management.New(management.Options{Ready: func() bool { return false }, Log: zerolog.Nop()})
	if got := get(t, "http://"+serve(t, mgmt.Handler())+"/readyz"); got != (response{412, "application/json", `{"reason":"not ready"}`}) {
		t.Errorf("readyz: %+v", got)
	}
}

// TestHealthDeepRequestRefused: the gRPC health service decodes with bounded codecs:
// a request nesting 10,000 levels (unknown JSON members, unknown binary groups),
// which protobuf-go alone would walk recursively, is refused as InvalidArgument.
func TestHealthDeepRequestRefused(t *testing.T) {
	addr := serve(t, management.New(management.Options{Log: zerolog.Nop()}).Handler())
	url := "http://" + addr + "/grpc.health.v1.Health/Check"
	deepJSON := `{"service":"","x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	var deepBinary []byte
	for range 10000 {
		deepBinary = protowire.AppendTag(deepBinary, 9, protowire.StartGroupType)
	}
	for range 10000 {
		deepBinary = protowire.AppendTag(deepBinary, 9, protowire.EndGroupType)
	}
	for _, c := range []struct{ contentType, body string }{
		{"application/json", deepJSON},
		{"application/proto", string(deepBinary)},
	} {
		res, err := http.Post(url, c.contentType, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "nested too deeply") {
			t.Errorf("%s: status %d %s, want 400 invalid_argument saying it is nested too deeply", c.contentType, res.StatusCode, b)
		}
	}
}
