package modes

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/evaluation/v2/evaluationv2grpc"
	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestFlagdRequiresToken: with --auth-token-file every evaluation, OFREP and sync
// request needs the bearer token (Connect, gRPC and OFREP answer 401 /
// Unauthenticated without it), management stays open for probes, refusals are
// counted, and the token appears in no log line.
func TestFlagdRequiresToken(t *testing.T) {
	const token = "tok-8f2c1a"
	c, err := parseStart(t, "-f", "file:"+examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0", "--bind-address", "127.0.0.1",
		"--auth-token-file", writeFile(t, "token", token+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, zerolog.New(&logs).Level(zerolog.TraceLevel), BuildInfo{}, func(a Addresses) { addrs <- a })
	}()
	a := <-addrs
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitReady(t, "http://"+a.Management+"/readyz")

	post := func(url, body, auth string) int {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	connectURL := "http://" + a.Evaluation + "/flagd.evaluation.v1.Service/ResolveBoolean"
	ofrepURL := "http://" + a.OFREP + "/ofrep/v1/evaluate/flags/new-checkout"
	type result struct{ Connect, OFREP int }
	for auth, want := range map[string]result{"": {401, 401}, "Bearer wrong": {401, 401}, "Bearer " + token: {200, 200}} {
		got := result{post(connectURL, `{"flagKey":"new-checkout","context":{}}`, auth), post(ofrepURL, `{"context":{}}`, auth)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Authorization %q (-want +got):\n%s", auth, diff)
		}
	}
	withToken := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	eval := evaluationv2grpc.NewServiceClient(grpcClient(t, a.Evaluation))
	if _, err := eval.ResolveBoolean(ctx, &evalv2.ResolveBooleanRequest{FlagKey: "new-checkout"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC without a token: %v", err)
	}
	if _, err := eval.ResolveBoolean(withToken, &evalv2.ResolveBooleanRequest{FlagKey: "new-checkout"}); err != nil {
		t.Errorf("gRPC with the token: %v", err)
	}
	sync := syncv1grpc.NewFlagSyncServiceClient(grpcClient(t, a.Sync))
	if _, err := sync.FetchAllFlags(ctx, &syncv1.FetchAllFlagsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("sync without a token: %v", err)
	}
	if _, err := sync.FetchAllFlags(withToken, &syncv1.FetchAllFlagsRequest{}); err != nil {
		t.Errorf("sync with the token: %v", err)
	}
	resp, err := http.Get("http://" + a.Management + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`flagpole_auth_failures_total{listener="evaluation",reason="missing"} 2`,
		`flagpole_auth_failures_total{listener="ofrep",reason="invalid"} 1`, `flagpole_auth_failures_total{listener="sync",reason="missing"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(logs.String(), token) || strings.Contains(string(metrics), token) {
		t.Error("the token appears in the logs or metrics")
	}
}
