package modes

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

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

// callerMarker finds the caller-chosen strings (provider ids and selectors) the
// calls of exerciseCallerInput send: each one names the call it came from.
var callerMarker = regexp.MustCompile(`LEAKMARK-[a-z-]+`)

// exerciseCallerInput calls every listener of a running flagd mode with provider
// ids and selectors that carry markers: accepted calls, calls refused for an
// invalid selector or an oversized message, evaluations that fail, streams opened
// and closed. token, when set, is sent as the bearer token; then the same calls
// are also made without it (refused with 401 / Unauthenticated).
func exerciseCallerInput(t *testing.T, a Addresses, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	authorized := []string{token}
	if token != "" {
		authorized = append(authorized, "")
	}
	for _, tok := range authorized {
		refused := token != "" && tok == ""
		grpcCode := func(want codes.Code) codes.Code {
			if refused {
				return codes.Unauthenticated
			}
			return want
		}
		httpStatus := func(want int) int {
			if refused {
				return http.StatusUnauthorized
			}
			return want
		}
		withMD := func(kv ...string) context.Context {
			if tok != "" {
				kv = append(kv, "authorization", "Bearer "+tok)
			}
			return metadata.AppendToOutgoingContext(ctx, kv...)
		}
		post := func(url, body, selector string) int {
			t.Helper()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Flagd-Selector", selector)
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		check := func(what string, got, want any) {
			t.Helper()
			if got != want {
				t.Errorf("%s (token %q): got %v, want %v", what, tok, got, want)
			}
		}

		// sync (8015): SyncFlags with the selector in the body and in the header,
		// valid and invalid; FetchAllFlags; GetMetadata; an oversized request
		sync := syncv1grpc.NewFlagSyncServiceClient(grpcClient(t, a.Sync))
		for _, c := range []struct {
			name               string
			provider, selector string
			header             string
			want               codes.Code
		}{
			{"SyncFlags, body selector", "LEAKMARK-sync-provider-ok", "flagSetId=LEAKMARK-sync-selector-ok", "", codes.OK},
			{"SyncFlags, header selector", "LEAKMARK-sync-provider-hdr", "", "flagSetId=LEAKMARK-sync-header-ok", codes.OK},
			{"SyncFlags, invalid body selector", "LEAKMARK-sync-provider-bad", "LEAKMARK-sync-badkey=x", "", codes.InvalidArgument},
			{"SyncFlags, invalid header selector", "LEAKMARK-sync-provider-badhdr", "", "LEAKMARK-sync-badhdr=x", codes.InvalidArgument},
			{"SyncFlags, oversized request", "LEAKMARK-sync-provider-huge" + strings.Repeat("x", 70<<10), "flagSetId=LEAKMARK-sync-selector-huge", "", codes.ResourceExhausted},
		} {
			sctx, scancel := context.WithCancel(withMD())
			if c.header != "" {
				sctx = metadata.AppendToOutgoingContext(sctx, "flagd-selector", c.header)
			}
			stream, err := sync.SyncFlags(sctx, &syncv1.SyncFlagsRequest{ProviderId: c.provider, Selector: c.selector})
			if err == nil {
				_, err = stream.Recv() // the first payload, or the refusal
			}
			check(c.name, status.Code(err), grpcCode(c.want))
			scancel()
		}
		_, err := sync.FetchAllFlags(withMD(), &syncv1.FetchAllFlagsRequest{ProviderId: "LEAKMARK-fetch-provider-ok", Selector: "flagSetId=LEAKMARK-fetch-ok"})
		check("FetchAllFlags", status.Code(err), grpcCode(codes.OK))
		_, err = sync.FetchAllFlags(withMD(), &syncv1.FetchAllFlagsRequest{ProviderId: "LEAKMARK-fetch-provider-bad", Selector: "LEAKMARK-fetch-bad=x"})
		check("FetchAllFlags, invalid selector", status.Code(err), grpcCode(codes.InvalidArgument))
		_, err = sync.FetchAllFlags(withMD("flagd-selector", "LEAKMARK-fetch-badhdr=x"), &syncv1.FetchAllFlagsRequest{})
		check("FetchAllFlags, invalid header selector", status.Code(err), grpcCode(codes.InvalidArgument))
		_, err = sync.GetMetadata(withMD("flagd-selector", "flagSetId=LEAKMARK-metadata"), &syncv1.GetMetadataRequest{})
		check("GetMetadata", status.Code(err), grpcCode(codes.OK))

		// evaluation (8013): Connect JSON (the fast path) and gRPC (grpc-go), a
		// selector that selects nothing (FLAG_NOT_FOUND), an invalid one, ResolveAll,
		// an EventStream
		evalURL := "http://" + a.Evaluation
		check("Connect JSON, selector", post(evalURL+"/flagd.evaluation.v1.Service/ResolveBoolean", `{"flagKey":"new-checkout"}`, "flagSetId=LEAKMARK-eval-json"), httpStatus(http.StatusNotFound))
		check("Connect JSON, invalid selector", post(evalURL+"/flagd.evaluation.v2.Service/ResolveBoolean", `{"flagKey":"new-checkout"}`, "LEAKMARK-eval-json-bad=x"), httpStatus(http.StatusBadRequest))
		check("Connect JSON, ResolveAll", post(evalURL+"/flagd.evaluation.v1.Service/ResolveAll", `{}`, "flagSetId=LEAKMARK-eval-all"), httpStatus(http.StatusOK))
		eval := evaluationv2grpc.NewServiceClient(grpcClient(t, a.Evaluation))
		_, err = eval.ResolveBoolean(withMD("flagd-selector", "flagSetId=LEAKMARK-eval-grpc"), &evalv2.ResolveBooleanRequest{FlagKey: "new-checkout"})
		check("gRPC, selector", status.Code(err), grpcCode(codes.NotFound))
		_, err = eval.ResolveBoolean(withMD("flagd-selector", "LEAKMARK-eval-grpc-bad=x"), &evalv2.ResolveBooleanRequest{FlagKey: "new-checkout"})
		check("gRPC, invalid selector", status.Code(err), grpcCode(codes.InvalidArgument))
		sctx, scancel := context.WithCancel(withMD("flagd-selector", "flagSetId=LEAKMARK-eval-stream"))
		events, err := eval.EventStream(sctx, &evalv2.EventStreamRequest{})
		if err == nil {
			_, err = events.Recv() // provider_ready
		}
		check("EventStream", status.Code(err), grpcCode(codes.OK))
		scancel()

		// OFREP (8016): single and bulk with a selector, an invalid selector, a
		// malformed body
		ofrepURL := "http://" + a.OFREP + "/ofrep/v1/evaluate/flags"
		check("OFREP single, selector", post(ofrepURL+"/new-checkout", `{}`, "flagSetId=LEAKMARK-ofrep-single"), httpStatus(http.StatusNotFound))
		check("OFREP bulk, selector", post(ofrepURL, `{}`, "flagSetId=LEAKMARK-ofrep-bulk"), httpStatus(http.StatusOK))
		check("OFREP, invalid selector", post(ofrepURL+"/new-checkout", `{}`, "LEAKMARK-ofrep-bad=x"), httpStatus(http.StatusBadRequest))
		check("OFREP, malformed body", post(ofrepURL+"/new-checkout", `{"context":`, "flagSetId=LEAKMARK-ofrep-malformed"), httpStatus(http.StatusBadRequest))
	}
}

// runFlagdLogging runs flagd mode on free ports with a logger at level writing into
// a buffer, lets fn call it, stops it and returns everything it logged.
func runFlagdLogging(t *testing.T, level zerolog.Level, fn func(Addresses), extra ...string) string {
	t.Helper()
	args := append([]string{"-f", "file:" + examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0", "--bind-address", "127.0.0.1"}, extra...)
	c, err := parseStart(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, zerolog.New(&logs).Level(level), BuildInfo{}, func(a Addresses) { addrs <- a })
	}()
	a := <-addrs
	waitReady(t, "http://"+a.Management+"/readyz")
	fn(a)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return logs.String()
}

// TestSelectorsAndProviderIDsNotLogged: the provider ids and selectors callers
// send (sync requests' provider_id and selector fields, the Flagd-Selector header
// and gRPC metadata on the sync, evaluation and OFREP listeners) appear in no log
// line of flagd mode at the default level (info), whether the call is served,
// fails or is refused (invalid selector, oversized message, missing bearer token).
// At debug level they appear exactly where docs/threat-model.md (7.3) says: the
// sync streams' open/close/reject lines (provider id and selector), failed
// evaluations (selector) and EventStream open/close (selector); never for
// FetchAllFlags, GetMetadata, invalid selectors of the evaluation and OFREP
// listeners, or refused messages.
func TestSelectorsAndProviderIDsNotLogged(t *testing.T) {
	token := "tok-" + strings.Repeat("7", 8)
	for _, run := range []struct {
		name  string
		token string
		extra []string
	}{
		{name: "sidecar (no auth)"},
		{name: "with --auth-token-file", token: token, extra: []string{"--auth-token-file", writeFile(t, "token", token+"\n")}},
	} {
		t.Run("info/"+run.name, func(t *testing.T) {
			out := runFlagdLogging(t, zerolog.InfoLevel, func(a Addresses) { exerciseCallerInput(t, a, run.token) }, run.extra...)
			if !strings.Contains(out, "flagd mode started") {
				t.Fatalf("the logger captured nothing:\n%s", out)
			}
			if leaked := callerMarker.FindAllString(out, -1); len(leaked) > 0 {
				t.Errorf("caller input in the info-level log: %q\n%s", slices.Compact(slices.Sorted(slices.Values(leaked))), out)
			}
		})
	}
	t.Run("debug", func(t *testing.T) {
		out := runFlagdLogging(t, zerolog.DebugLevel, func(a Addresses) { exerciseCallerInput(t, a, "") })
		got := slices.Compact(slices.Sorted(slices.Values(callerMarker.FindAllString(out, -1))))
		want := []string{
			"LEAKMARK-eval-grpc",            // evaluation failed (FLAG_NOT_FOUND), selector
			"LEAKMARK-eval-json",            // the same on the Connect fast path
			"LEAKMARK-eval-stream",          // event stream opened / closed, selector
			"LEAKMARK-ofrep-single",         // OFREP failed evaluation, selector
			"LEAKMARK-sync-badhdr",          // sync stream rejected: the raw selector (redacted)
			"LEAKMARK-sync-badkey",          //   " (body selector)
			"LEAKMARK-sync-header-ok",       // sync stream opened / closed: selector
			"LEAKMARK-sync-provider-bad",    // sync stream rejected: provider id
			"LEAKMARK-sync-provider-badhdr", //   "
			"LEAKMARK-sync-provider-hdr",    // sync stream opened / closed: provider id
			"LEAKMARK-sync-provider-ok",     //   "
			"LEAKMARK-sync-selector-ok",     //   selector
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("caller input in the debug-level log (-documented +logged):\n%s\n%s", diff, out)
		}
	})
}
