package controller

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/sidecar"
)

// The fixture of the reconciler tests, in kubernetes/sample-controller's style: the
// informers' indexers are seeded directly, sync is called directly, and every
// request the reconciler makes reaches an httptest server speaking just enough of
// the API (a GET answers a "live" object or 404; a write answers 200, or the status
// a case asks for) that records it: the expected requests are compared with go-cmp.

// testNow is the reconcilers' clock in tests.
var testNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// action is one request: verb, path and JSON body (decoded, so that member order
// does not matter).
type action struct {
	Verb, Path string
	Body       any
}

// fakeAPI is the API server of the fixture.
type fakeAPI struct {
	mu      sync.Mutex
	live    map[string]runtime.Object // path → what a GET answers
	fail    map[string]int32          // "VERB path" → the status code to answer
	actions []action
}

// kinds names the apiVersion and kind of each resource a write may answer with.
var kinds = map[string][2]string{
	"configmaps": {"v1", "ConfigMap"}, "serviceaccounts": {"v1", "ServiceAccount"},
	"roles": {"rbac.authorization.k8s.io/v1", "Role"}, "rolebindings": {"rbac.authorization.k8s.io/v1", "RoleBinding"},
	"deployments": {"apps/v1", "Deployment"}, "statefulsets": {"apps/v1", "StatefulSet"}, "daemonsets": {"apps/v1", "DaemonSet"},
	"featureflags": {"core.openfeature.dev/v1beta1", "FeatureFlag"}, "featureflagsources": {"core.openfeature.dev/v1beta1", "FeatureFlagSource"},
}

// resourceOf is the resource of an object path (…/<resource>/<name>[/status]).
func resourceOf(path string) string {
	parts := strings.Split(strings.TrimSuffix(path, "/status"), "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	data, _ := io.ReadAll(req.Body)
	a := action{Verb: req.Method, Path: req.URL.Path}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &a.Body); err != nil {
			a.Body = string(data)
		}
	}
	f.mu.Lock()
	f.actions = append(f.actions, a)
	code, failing := f.fail[req.Method+" "+req.URL.Path]
	obj := f.live[req.URL.Path]
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	kind := kinds[resourceOf(req.URL.Path)]
	var out any
	switch {
	case failing:
		writeStatus(w, code)
		return
	case req.Method == http.MethodGet && obj == nil:
		writeStatus(w, http.StatusNotFound)
		return
	case req.Method == http.MethodGet:
		var doc map[string]any
		data, err := json.Marshal(obj)
		if err == nil {
			err = json.Unmarshal(data, &doc)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		doc["apiVersion"], doc["kind"] = kind[0], kind[1]
		out = doc
	default:
		out = map[string]any{"apiVersion": kind[0], "kind": kind[1], "metadata": map[string]any{"resourceVersion": "written"}}
	}
	if err := json.NewEncoder(w).Encode(out); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func writeStatus(w http.ResponseWriter, code int32) {
	reason := map[int32]metav1.StatusReason{http.StatusNotFound: metav1.StatusReasonNotFound, http.StatusConflict: metav1.StatusReasonConflict,
		http.StatusForbidden: metav1.StatusReasonForbidden}[code]
	w.WriteHeader(int(code))
	if err := json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusFailure,
		Code: code, Reason: reason, Message: http.StatusText(int(code))}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// take returns the recorded actions and forgets them.
func (f *fakeAPI) take() []action {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.actions
	f.actions = nil
	return out
}

// event is one recorded Event: the object it is on ("namespace/name"), type,
// reason and message.
type event struct {
	Object, Type, Reason, Message string
}

// events records Events (record.EventRecorder).
type events struct {
	mu   sync.Mutex
	list []event
}

func (e *events) Event(obj runtime.Object, eventtype, reason, message string) {
	m, err := meta.Accessor(obj)
	name := "?"
	if err == nil {
		name = m.GetNamespace() + "/" + m.GetName()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, event{Object: name, Type: eventtype, Reason: reason, Message: message})
}

func (e *events) Eventf(obj runtime.Object, eventtype, reason, format string, args ...any) {
	e.Event(obj, eventtype, reason, fmt.Sprintf(format, args...))
}

func (e *events) AnnotatedEventf(obj runtime.Object, _ map[string]string, eventtype, reason, format string, args ...any) {
	e.Eventf(obj, eventtype, reason, format, args...)
}

func (e *events) take() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.list
	e.list = nil
	return out
}

// fixture holds the fake API server and what the reconcilers are built from.
type fixture struct {
	t       *testing.T
	api     *fakeAPI
	cluster *sidecar.Cluster
	clients Clients
	events  *events
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	api := &fakeAPI{live: map[string]runtime.Object{}, fail: map[string]int32{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL, QPS: -1}
	cluster, err := sidecar.NewCluster(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	clients, err := NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, api: api, cluster: cluster, clients: clients, events: &events{}}
}

// seed adds objects to an informer's cache, as if listed.
func (f *fixture) seed(inf cache.SharedIndexInformer, objs ...runtime.Object) {
	f.t.Helper()
	for _, o := range objs {
		if err := inf.GetIndexer().Add(o); err != nil {
			f.t.Fatal(err)
		}
	}
}

// check compares the recorded requests and Events with the expected ones.
func (f *fixture) check(name string, wantActions []action, wantEvents []event) {
	f.t.Helper()
	if diff := cmp.Diff(wantActions, f.api.take()); diff != "" {
		f.t.Errorf("%s: requests (-want +got):\n%s", name, diff)
	}
	if diff := cmp.Diff(wantEvents, f.events.take()); diff != "" {
		f.t.Errorf("%s: events (-want +got):\n%s", name, diff)
	}
}

// asJSON is v as the fake server records a JSON body.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// statusPatch is the body of a status merge patch.
func statusPatch(t *testing.T, status any) any {
	t.Helper()
	return asJSON(t, map[string]any{"status": status})
}

// readyCondition is a Ready condition at testNow.
func readyCondition(status metav1.ConditionStatus, reason, message string, generation int64) metav1.Condition {
	return metav1.Condition{Type: "Ready", Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
		LastTransitionTime: metav1.NewTime(testNow)}
}

// writes returns "VERB path" of every write so far, reads and Events left out.
func (f *fakeAPI) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.actions {
		if a.Verb != http.MethodGet && !strings.Contains(a.Path, "/events") {
			out = append(out, a.Verb+" "+a.Path)
		}
	}
	return out
}

// body returns the JSON body of the last request with this verb and path.
func (f *fakeAPI) body(verb, path string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range slices.Backward(f.actions) {
		if a.Verb == verb && a.Path == path {
			doc, _ := a.Body.(map[string]any)
			return doc
		}
	}
	return nil
}
