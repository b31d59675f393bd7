package controller

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
)

// action is one request a reconciler made, as sample-controller's fixture tests
// compare them: the verb and the object's path, plus the body for writes.
type action struct {
	Verb, Path string
	Body       map[string]any
}

// fakeAPI is just enough of an API server for fixture tests: every GET is a 404
// (reconcilers read from their seeded caches; a live read means a cache miss), and
// every write succeeds and echoes its body. It records the writes.
type fakeAPI struct {
	srv     *httptest.Server
	mu      sync.Mutex
	actions []action
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
			return
		}
		var doc map[string]any
		_ = json.Unmarshal(body, &doc)
		f.mu.Lock()
		f.actions = append(f.actions, action{Verb: r.Method, Path: r.URL.Path, Body: doc})
		f.mu.Unlock()
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		if len(body) == 0 || r.Method == http.MethodDelete {
			body = []byte(`{}`)
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) config() *rest.Config { return &rest.Config{Host: f.srv.URL} }

// writes returns "VERB path" of every write so far (events excluded: the recorder
// writes them asynchronously).
func (f *fakeAPI) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.actions {
		if strings.Contains(a.Path, "/events") {
			continue
		}
		out = append(out, a.Verb+" "+a.Path)
	}
	return out
}

// body returns the body of the last write to path.
func (f *fakeAPI) body(verb, path string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.actions) - 1; i >= 0; i-- {
		if f.actions[i].Verb == verb && f.actions[i].Path == path {
			return f.actions[i].Body
		}
	}
	return nil
}

func (f *fakeAPI) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = nil
}
