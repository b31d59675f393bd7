package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// piiMarker stands for personal data: the attack tests put it into evaluation
// contexts (targeting keys, attributes, nested values, headers, baggage) and into
// FeatureFlag targeting. No log of any process the run started may hold it
// (scanLogsForMarkers, after every test), nor any metric, status or Event.
const piiMarker = "pii-marker-7f3a"

// logMarkers are the values no process log of the run may hold: personal data,
// the standalone flagd's token, what an http source fetched, the victim
// namespace's flags.
var logMarkers = []string{piiMarker, standaloneToken, reflectedSecret, victimMarker}

// scanLogsForMarkers reads the log of every process the run started (flagpole in
// every mode, kube-apiserver, etcd) and reports each line holding a marker; it
// returns the exit code to use (1 if any, else 0).
func scanLogsForMarkers(w io.Writer) int {
	if suite == nil {
		return 0
	}
	findings, scanned := suite.Janitor.ScanLogs(logMarkers...)
	if len(findings) == 0 {
		fmt.Fprintf(w, "e2e: %d process logs scanned for personal-data and secret markers: none found\n", scanned)
		return 0
	}
	fmt.Fprintf(w, "e2e: FAIL: markers found in process logs (%d scanned):\n", scanned)
	for _, f := range findings {
		fmt.Fprintln(w, "  "+f)
	}
	return 1
}

// piiFlags has a flag whose targeting names the marker, one whose targeting
// returns a context value as the variant (an evaluation error whose engine message
// quotes it) and a number flag (a type mismatch when asked for a string).
const piiFlags = `{"flags":{
 "beta":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
  "targeting":{"if":[{"in":["` + piiMarker + `",{"var":"email"}]},"on","off"]}},
 "echo":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"var":"email"}},
 "num":{"state":"ENABLED","variants":{"one":1},"defaultVariant":"one"}}}`

// TestAttackPIIMarker sends evaluation contexts holding the marker over Connect
// JSON and OFREP (single and bulk), successful, failing (the engine's message
// quotes the context) and malformed, with the marker in headers and baggage too,
// to a flagd at its default log level; the marker is then in neither /metrics nor
// /readyz (and, after the run, in no log). A FeatureFlag whose targeting holds the
// marker and is invalid gets an Invalid status and Event that do not quote it.
func TestAttackPIIMarker(t *testing.T) {
	dir := suite.TempDir(t)
	flagd := suite.StartFlagd(t, dir, "", "--uri", "file:"+writeFile(t, dir, "flags.json", piiFlags))
	ctx := t.Context()
	if err := flagd.WaitReadyz(ctx, http.StatusOK, readyTimeout); err != nil {
		t.Fatal(err)
	}
	evalCtx := map[string]any{"targetingKey": piiMarker + "-tk", "email": piiMarker + "@example.com", "nested": map[string]any{"deep": piiMarker},
		"list": []any{piiMarker}, piiMarker + "-key": true}
	contextJSON, err := json.Marshal(evalCtx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(url, body string) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-User-Email", piiMarker+"@example.com")
		req.Header.Set("Baggage", "user.email="+piiMarker)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	connect := "http://" + flagd.Evaluation + "/flagd.evaluation.v1.Service/"
	ofrep := "http://" + flagd.OFREP + "/ofrep/v1/evaluate/flags"
	for _, r := range []struct{ url, body string }{
		{connect + "ResolveBoolean", `{"flagKey":"beta","context":` + string(contextJSON) + `}`},
		{connect + "ResolveString", `{"flagKey":"echo","context":` + string(contextJSON) + `}`},
		{connect + "ResolveString", `{"flagKey":"num","context":` + string(contextJSON) + `}`},
		{connect + "ResolveBoolean", `{"flagKey":"missing","context":` + string(contextJSON) + `}`},
		{connect + "ResolveAll", `{"context":` + string(contextJSON) + `}`},
		{connect + "ResolveBoolean", `{"flagKey":"beta","context":{"email":"` + piiMarker + `",}}`},
		{ofrep + "/beta", `{"context":` + string(contextJSON) + `}`},
		{ofrep + "/echo", `{"context":` + string(contextJSON) + `}`},
		{ofrep, `{"context":` + string(contextJSON) + `}`},
		{ofrep + "/beta", `{"context":{"email":"` + piiMarker + `"`},
	} {
		code := send(r.url, r.body)
		t.Logf("POST %s: %d", r.url[strings.LastIndexByte(r.url, '/'):], code)
	}
	metrics := scrape(t, "http://"+flagd.Management+"/metrics")
	_, readyz, _ := flagd.Readyz(ctx)
	for where, text := range map[string]string{"/metrics": metrics, "/readyz": readyz} {
		if strings.Contains(text, piiMarker) {
			t.Errorf("the marker is in %s", where)
		}
	}
	if logs, err := os.ReadFile(flagd.Proc.LogPath); err != nil || strings.Contains(string(logs), piiMarker) {
		t.Errorf("the marker is in flagd's log (%v)", err)
	}

	// The controllers on a FeatureFlag whose targeting holds the marker and that
	// flagd would refuse (stored: only the pod webhook is registered here).
	e := startWebhook(t)
	startControllers(t, e)
	bad := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "pii"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{
		Flags: map[string]v1beta1.Flag{"beta": {State: "ENABLED", Variants: json.RawMessage(`{"on":true,"off":false}`), DefaultVariant: "off",
			Targeting: json.RawMessage(`{"if":[{"==":[{"var":"email"},"` + piiMarker + `"]},"on",{"nope":["` + piiMarker + `"]}]}`)}}}}}
	flags := e.c.Flags.CoreV1beta1().FeatureFlags(e.ns)
	if _, err := flags.Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var message string
	waitFor(t, "the Invalid status", func() (bool, error) {
		ff, err := flags.Get(ctx, "pii", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(ff.Status.Conditions, v1beta1.ConditionReady)
		if c != nil {
			message = c.Message
		}
		return c != nil && c.Status == metav1.ConditionFalse, nil
	})
	t.Logf("status: %s", message)
	if strings.Contains(message, piiMarker) {
		t.Errorf("the status quotes the targeting: %s", message)
	}
	if ev := strings.Join(e.events(t, "FeatureFlag", "pii"), "\n"); strings.Contains(ev, piiMarker) {
		t.Errorf("an Event quotes the targeting: %s", ev)
	}
}
