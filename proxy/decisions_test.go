package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
)

// logSink is a log destination safe for the server's goroutines.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// refusalMessage is the message of the proxy's refusal log line.
const refusalMessage = "flagd-proxy request refused (logged at most every 10 s)"

// grantHint ends the reason of an access refusal.
const grantHint = " (flagpole's webhook grants a pod's ServiceAccount the FeatureFlags its FeatureFlagSources name, in namespaces that admit it)"

// refusalLines returns the refusal log lines written so far, decoded.
func refusalLines(t *testing.T, sink *logSink) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(sink.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if line["message"] == refusalMessage {
			delete(line, "time")
			out = append(out, line)
		}
	}
	return out
}

// counters reads a counter family from the registry, as /metrics serves it: one
// value per label set, written "name=value ..." in the order of labels.
func counters(t *testing.T, g prometheus.Gatherer, name string, labels ...string) map[string]float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			values := map[string]string{}
			for _, l := range m.GetLabel() {
				values[l.GetName()] = l.GetValue()
			}
			var key []string
			for _, l := range labels {
				key = append(key, l+"="+values[l])
			}
			if len(values) != len(labels) {
				t.Errorf("%s has labels %v, want %v", name, values, labels)
			}
			out[strings.Join(key, " ")] = m.GetCounter().GetValue()
		}
	}
	return out
}

// TestAuthDecisionsCountedAndRefusalsLogged: every caller check is counted in
// flagpole_flagd_proxy_auth_decisions_total by check, result and whether a cache
// answered, and every refused RPC in flagpole_flagd_proxy_refused_total; a refusal
// is logged with the caller's identity (its ServiceAccount's user name, never the
// token) and the log is throttled: further refusals within 10 s are not logged but
// counted into the next line.
func TestAuthDecisionsCountedAndRefusalsLogged(t *testing.T) {
	clk := &clock{t: time.Unix(1_000_000, 0)}
	f, _, _ := fakeFlags(t, nil, featureFlag(flagA, "yes"), featureFlag(flagB, "yes"))
	r := newFakeReviewer()
	r.addToken("token-a", userA, DefaultAudience)
	r.addToken("token-b", userB, DefaultAudience)
	r.grant(userA, flagA, true) // userB has no grant for flagA, userA none for flagB
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	auth := NewAuthorizer(r, AuthOptions{TokenTTL: 2 * time.Minute, AccessTTL: 30 * time.Second, DeniedTTL: 5 * time.Second, Now: clk.now}, m)
	sink := &logSink{}
	s := serveWith(t, Options{Flags: f, Auth: auth, Log: zerolog.New(sink), Metrics: m, Now: clk.now})
	ctx := testContext(t)
	fetch := func(token string, ref Ref) error {
		_, err := s.client.FetchAllFlags(as(ctx, token, ""), &syncv1.FetchAllFlagsRequest{Selector: ref.Selector()})
		return err
	}

	// Accepted: a stream (closed by the client once it has the flags), then a
	// fetch answered from the caches. Nothing logged.
	streamCtx, closeStream := context.WithCancel(ctx)
	_, doc, err := open(as(streamCtx, "token-a", ""), s.client, flagA.Selector())
	closeStream()
	if err != nil || defaultVariant(t, doc) != "yes" {
		t.Fatalf("an authorized stream: %q, %v", doc, err)
	}
	if err := fetch("token-a", flagA); err != nil {
		t.Fatalf("an authorized fetch: %v", err)
	}
	want := map[string]float64{
		"check=token result=allowed cached=false":  1,
		"check=token result=allowed cached=true":   1,
		"check=access result=allowed cached=false": 1,
		"check=access result=allowed cached=true":  1,
	}
	if diff := cmp.Diff(want, counters(t, reg, "flagpole_flagd_proxy_auth_decisions_total", "check", "result", "cached")); diff != "" {
		t.Errorf("decisions after two accepted RPCs (-want +got):\n%s", diff)
	}
	if lines := refusalLines(t, sink); len(lines) != 0 {
		t.Errorf("accepted RPCs logged as refusals: %v", lines)
	}

	// Refused: the first refusal is logged with the caller's user name.
	wantCode(t, fetch("token-a", flagB), codes.PermissionDenied, "system:serviceaccount:team-a:web may not get FeatureFlag team-b/search")
	first := map[string]any{"level": "warn", "message": refusalMessage, "caller": userA, "method": "FetchAllFlags",
		"selector": flagB.Selector(), "code": "PermissionDenied", "reason": "system:serviceaccount:team-a:web may not get FeatureFlag team-b/search" + grantHint,
		"refused_since_last_log": float64(0)}
	if diff := cmp.Diff([]map[string]any{first}, refusalLines(t, sink)); diff != "" {
		t.Errorf("the first refusal's log line (-want +got):\n%s", diff)
	}

	// Within the throttle's 10 s (the clock does not move): the same refusal again
	// (from the decision cache) and a forged token are counted, not logged.
	wantCode(t, fetch("token-a", flagB), codes.PermissionDenied, "may not get FeatureFlag team-b/search")
	wantCode(t, fetch("forged", flagA), codes.PermissionDenied, "does not accept the token")
	if diff := cmp.Diff([]map[string]any{first}, refusalLines(t, sink)); diff != "" {
		t.Errorf("refusals within 10 s of a logged one were logged (-want +got):\n%s", diff)
	}

	// 10 s later the next refusal is logged, with the number held back.
	clk.advance(10 * time.Second)
	wantCode(t, fetch("token-b", flagA), codes.PermissionDenied, "system:serviceaccount:team-b:web may not get FeatureFlag team-a/checkout")
	second := map[string]any{"level": "warn", "message": refusalMessage, "caller": userB, "method": "FetchAllFlags",
		"selector": flagA.Selector(), "code": "PermissionDenied", "reason": "system:serviceaccount:team-b:web may not get FeatureFlag team-a/checkout" + grantHint,
		"refused_since_last_log": float64(2)}
	if diff := cmp.Diff([]map[string]any{first, second}, refusalLines(t, sink)); diff != "" {
		t.Errorf("refusal log lines (-want +got):\n%s", diff)
	}

	want = map[string]float64{
		"check=token result=allowed cached=false":  2, // token-a once, token-b once
		"check=token result=allowed cached=true":   3,
		"check=token result=denied cached=false":   1, // the forged token
		"check=access result=allowed cached=false": 1,
		"check=access result=allowed cached=true":  1,
		"check=access result=denied cached=false":  2, // team-a → team-b, team-b → team-a
		"check=access result=denied cached=true":   1, // team-a → team-b again, within DeniedTTL
	}
	if diff := cmp.Diff(want, counters(t, reg, "flagpole_flagd_proxy_auth_decisions_total", "check", "result", "cached")); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"code=PermissionDenied": 4}, counters(t, reg, "flagpole_flagd_proxy_refused_total", "code")); diff != "" {
		t.Errorf("refused RPCs (-want +got):\n%s", diff)
	}
	for _, secret := range []string{"token-a", "token-b", "forged"} {
		if strings.Contains(sink.String(), secret) {
			t.Errorf("the log holds the token %q:\n%s", secret, sink.String())
		}
	}
}
