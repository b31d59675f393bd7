package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
)

// attackFlags is a flag document for flagd processes started from a file.
const attackFlags = `{"flags":{"launch":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off"}}}`

// standaloneToken is the standalone flagd's token; reflectedSecret is what an
// http source fetches from a "metadata service". Neither may reach a log.
const (
	standaloneToken = "tok-e2e-7d1f0c2a9b"
	reflectedSecret = "wJalrXUtnFEMI-K7MDENG-reflect-3c1e"
)

// writeFile writes data to dir/name (0600) and returns its path.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// scrape returns the body of GET url.
func scrape(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestAttackStandaloneFlagdToken: a network neighbour reaches a standalone flagd
// started with --auth-token-file (what a Flagd with spec.auth runs) and guesses
// tokens over Connect, OFREP and the sync gRPC service: every guess is refused
// (401 / Unauthenticated) the same way, whatever its shape (missing, empty, a
// prefix or an extension of the token, another scheme, the token in the query);
// the refusals are counted for alerting; neither the token nor any guess appears in
// the log or the metrics. The comparison is constant-time over SHA-256 digests
// (server.TestTokensHandler); no timing is measured here.
func TestAttackStandaloneFlagdToken(t *testing.T) {
	dir := suite.TempDir(t)
	const token = standaloneToken
	flagd := suite.StartFlagd(t, dir, "", "--uri", "file:"+writeFile(t, dir, "flags.json", attackFlags),
		"--auth-token-file", writeFile(t, dir, "token", token+"\n"))
	ctx := t.Context()
	if err := flagd.WaitReadyz(ctx, http.StatusOK, readyTimeout); err != nil {
		t.Fatal(err)
	}
	post := func(url, auth string) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"flagKey":"launch","context":{}}`))
		if err != nil {
			t.Fatal(err)
		}
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
	connect := "http://" + flagd.Evaluation + "/flagd.evaluation.v1.Service/ResolveBoolean"
	ofrep := "http://" + flagd.OFREP + "/ofrep/v1/evaluate/flags/launch"
	guesses := []string{"", "Bearer", "Bearer ", "Bearer tok", "Bearer " + token[:len(token)-1], "Bearer " + token + "x", "bearer-guess " + token,
		"Basic " + token, "Bearer " + strings.ToUpper(token), "Bearer  " + token + " extra", "Token " + token}
	for i := range 40 {
		guesses = append(guesses, fmt.Sprintf("Bearer guess-%04d-%s", i, token[:8]))
	}
	refused := 0
	for _, g := range guesses {
		for _, url := range []string{connect, ofrep, connect + "?token=" + token, ofrep + "?access_token=" + token} {
			if code := post(url, g); code != http.StatusUnauthorized {
				t.Errorf("Authorization %q on %s: %d, want 401", g, url, code)
			}
			refused++
		}
	}
	if code := post(connect, "Bearer "+token); code != http.StatusOK {
		t.Errorf("the right token: %d", code)
	}

	conn, err := grpc.NewClient(flagd.Sync, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sync := syncv1grpc.NewFlagSyncServiceClient(conn)
	for _, g := range guesses[:10] {
		rctx := ctx
		if g != "" {
			rctx = metadata.AppendToOutgoingContext(ctx, "authorization", g)
		}
		if _, err := sync.FetchAllFlags(rctx, &syncv1.FetchAllFlagsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("sync with %q: %v, want Unauthenticated", g, err)
		}
		refused++
	}
	metrics := scrape(t, "http://"+flagd.Management+"/metrics")
	counted := 0.0
	for line := range strings.SplitSeq(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, "flagpole_auth_failures_total{"); ok {
			var v float64
			if _, err := fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v); err == nil {
				counted += v
			}
		}
	}
	if counted < float64(refused) {
		t.Errorf("flagpole_auth_failures_total counts %v refusals, want at least %d", counted, refused)
	}
	t.Logf("%d guesses refused, %v counted", refused, counted)
	logs, err := os.ReadFile(flagd.Proc.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for where, text := range map[string]string{"log": string(logs), "metrics": metrics} {
		if strings.Contains(text, token) || strings.Contains(text, token[:8]) {
			t.Errorf("the token, or a guess holding part of it, is in the %s", where)
		}
	}
}

// TestAttackHTTPSourceToAPIServer: a FeatureFlagSource's http source pointed at the
// API server, to read another namespace's FeatureFlag with whatever the sidecar
// holds, gets nothing: the sidecar verifies the certificate with the system roots
// only (the cluster's CA is not among them) and sends no credential of its own;
// the source error names the failure, not the API server's answer.
func TestAttackHTTPSourceToAPIServer(t *testing.T) {
	e := startAttack(t)
	if e.c.ControlPlane == nil {
		t.Skip("needs the local control plane's address")
	}
	dir := suite.TempDir(t)
	target := e.c.ControlPlane.URL + "/apis/core.openfeature.dev/v1beta1/namespaces/" + e.victim + "/featureflags/secret"
	flagd := suite.StartFlagd(t, dir, "", "--sources", `[{"uri":"`+target+`","provider":"http","interval":1}]`)
	ctx := t.Context()
	if _, _, err := flagd.WaitLog(ctx, 0, logTimeout, func(l harness.LogEntry) bool {
		return strings.Contains(l.Text(), "certificate")
	}); err != nil {
		t.Errorf("no certificate error: %v", err)
	}
	code, body, err := flagd.Readyz(ctx)
	if err != nil || code != http.StatusPreconditionFailed {
		t.Errorf("/readyz %d %v", code, err)
	}
	logs, _ := os.ReadFile(flagd.Proc.LogPath)
	if strings.Contains(body, victimMarker) || strings.Contains(string(logs), victimMarker) {
		t.Errorf("the victim's flags reached the attacker's sidecar")
	}
	// Without TLS verification in the way, the API server still answers an
	// anonymous request with 401/403: the sidecar has no credential to send.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the http source sent Authorization to %s", r.URL)
		}
		http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	dir2 := suite.TempDir(t)
	other := suite.StartFlagd(t, dir2, "", "--sources", `[{"uri":"`+srv.URL+`/apis/core.openfeature.dev/v1beta1/featureflags","provider":"http","interval":1}]`)
	if _, _, err := other.WaitLog(ctx, 0, logTimeout, func(l harness.LogEntry) bool { return strings.Contains(l.Text(), "401") }); err != nil {
		t.Errorf("no 401 logged: %v", err)
	}
}

// TestAttackHTTPSourceReflection: an http source pointed at something that is not
// a flag server (the cloud metadata service, an internal API) that answers with
// credentials: the sidecar rejects the document and reports where it failed, but
// quotes none of it in its log, /readyz or /metrics, so whoever configured the
// source (a FeatureFlagSource author) learns nothing of the answer.
func TestAttackHTTPSourceReflection(t *testing.T) {
	const secretKey = reflectedSecret
	bodies := []string{
		`{"Code":"Success","AccessKeyId":"ASIA-reflect-3c1e","SecretAccessKey":"` + secretKey + `","Token":"x"}`,
		"ami-id\nhostname\niam/\n" + secretKey + "\n",
		`{"flags": ` + secretKey,
	}
	for i, body := range bodies {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, body)
			}))
			defer srv.Close()
			dir := suite.TempDir(t)
			flagd := suite.StartFlagd(t, dir, "", "--sources", `[{"uri":"`+srv.URL+`/latest/meta-data/iam/security-credentials/role","provider":"http","interval":1}]`)
			ctx, cancel := context.WithTimeout(t.Context(), logTimeout)
			defer cancel()
			if _, _, err := flagd.WaitLog(ctx, 0, logTimeout, func(l harness.LogEntry) bool { return l.Level() == "warn" || l.Level() == "error" }); err != nil {
				t.Fatalf("the rejected document was not reported: %v", err)
			}
			time.Sleep(1500 * time.Millisecond) // one more poll of the source (interval 1 s)
			_, readyz, _ := flagd.Readyz(ctx)
			metrics := scrape(t, "http://"+flagd.Management+"/metrics")
			logs, _ := os.ReadFile(flagd.Proc.LogPath)
			for where, text := range map[string]string{"log": string(logs), "/readyz": readyz, "/metrics": metrics} {
				if strings.Contains(text, secretKey) {
					t.Errorf("the fetched answer is quoted in the %s", where)
				}
			}
		})
	}
}

// TestAttackFlagdTokenNotExposed: whoever can read a namespace's Deployments,
// Flagd statuses or Events (but not its Secrets) looks there for a Flagd's access
// token: the Deployment carries only --auth-token-file and a Secret volume, the
// status and Events name no token, the operator logs none.
func TestAttackFlagdTokenNotExposed(t *testing.T) {
	e := newFlagdEnv(t)
	ctx := t.Context()
	op := suite.StartOperator(t, e.c, suite.TempDir(t), "controller", "--sidecar-image", sidecarImage, "--leader-elect=false")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "flagd-tokens"}, StringData: map[string]string{"tokens": standaloneToken + "\n"}}
	if _, err := e.c.Kube.CoreV1().Secrets(e.ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.flagd(t, "guarded", func(s *v1beta1.FlagdSpec) {
		s.Auth = &v1beta1.FlagdAuth{TokenSecretRef: &v1beta1.SecretKeyRef{Name: "flagd-tokens", Key: "tokens"}}
	})
	var d *appsv1.Deployment
	waitFor(t, "the Deployment", func() (bool, error) {
		var err error
		d, err = e.deployment(ctx, "guarded")
		return err == nil, err
	})
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--auth-token-file") {
		t.Errorf("args %q: no --auth-token-file", d.Spec.Template.Spec.Containers[0].Args)
	}
	var status string
	waitFor(t, "the Flagd's status", func() (bool, error) {
		f, err := e.c.Flags.CoreV1beta1().Flagds(e.ns).Get(ctx, "guarded", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		raw, err := json.Marshal(f.Status)
		status = string(raw)
		return len(f.Status.Conditions) > 0, err
	})
	deployment, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	events, err := e.c.Kube.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsJSON, err := json.Marshal(events)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := os.ReadFile(op.Proc.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for where, text := range map[string]string{"Deployment": string(deployment), "status": status, "Events": string(eventsJSON), "operator log": string(logs)} {
		if strings.Contains(text, standaloneToken) {
			t.Errorf("the token is in the %s", where)
		}
	}
}
