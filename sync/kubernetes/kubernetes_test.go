package kubesource

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	applycorev1beta1 "github.com/flagpole-dev/flagpole/crd/generated/applyconfiguration/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/generated/clientset/versioned/fake"
	"github.com/flagpole-dev/flagpole/flagd/store"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	"github.com/flagpole-dev/flagpole/sync/sourcetest"
)

// wait bounds the waits for a watch and store states, as sourcetest.DefaultWait bounds
// the waits for updates; none of them asserts on time.
const wait = sourcetest.DefaultWait

const ns, name = "shop", "flags"

func featureFlag(namespace, name, value string) *v1beta1.FeatureFlag {
	return &v1beta1.FeatureFlag{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{
			Flags: map[string]v1beta1.Flag{"f": {State: "ENABLED", DefaultVariant: "a",
				Variants: json.RawMessage(fmt.Sprintf(`{"a":%q}`, value))}},
			Evaluators: json.RawMessage(`{"is-ada":{"==":[{"var":"email"},"ada@example.com"]}}`),
			Metadata:   json.RawMessage(`{"flagSetId":"shop"}`),
		}},
	}
}

// payload is what flagd sends for featureFlag(..., value): json.Marshal(spec.flagSpec).
func payload(value string) string {
	return fmt.Sprintf(`{"flags":{"f":{"state":"ENABLED","variants":{"a":%q},"defaultVariant":"a"}},`+
		`"$evaluators":{"is-ada":{"==":[{"var":"email"},"ada@example.com"]}},"metadata":{"flagSetId":"shop"}}`, value)
}

// followed is a running source with its updates.
type followed struct {
	*sourcetest.Updates
	t        *testing.T
	client   *fake.Clientset
	watching chan struct{}
}

func follow(t *testing.T, client *fake.Clientset) *followed {
	t.Helper()
	f := &followed{t: t, client: client, watching: make(chan struct{}, 100)}
	s, err := New(flagsync.SourceConfig{URI: ns + "/" + name, Provider: flagsync.ProviderKubernetes}, zerolog.Nop(), clientset{client})
	if err != nil {
		t.Fatal(err)
	}
	s.onWatch = func() { f.watching <- struct{}{} }
	f.Updates = sourcetest.Run(t, s)
	return f
}

// watchOpen waits until the informer watches: the fake clientset drops changes made
// between its list and its watch (it has no resource versions to resume from).
func (f *followed) watchOpen() {
	f.t.Helper()
	select {
	case <-f.watching:
	case <-time.After(wait):
		f.t.Fatal("the informer never opened a watch")
	}
}

// data asserts that the next update is this payload, sent under the source's name.
func (f *followed) data(want string) {
	f.t.Helper()
	if u := f.Data(want); u.Source != ns+"/"+name {
		f.t.Errorf("update source %q, want %q", u.Source, ns+"/"+name)
	}
}

func (f *followed) create(ff *v1beta1.FeatureFlag) {
	f.t.Helper()
	if _, err := f.client.CoreV1beta1().FeatureFlags(ff.Namespace).Create(context.Background(), ff, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *followed) update(ff *v1beta1.FeatureFlag) {
	f.t.Helper()
	if _, err := f.client.CoreV1beta1().FeatureFlags(ff.Namespace).Update(context.Background(), ff, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *followed) remove(namespace, name string) {
	f.t.Helper()
	if err := f.client.CoreV1beta1().FeatureFlags(namespace).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func TestNew(t *testing.T) {
	client := fake.NewClientset()
	tests := []struct {
		uri     string
		wantErr string
	}{
		{"shop/flags", ""},
		{"shop/my.flags-1", ""},
		{"flags", "must be <namespace>/<name>"},
		{"a/b/c", "must be <namespace>/<name>"},
		{"Shop/flags", `namespace "Shop"`},
		{"shop.eu/flags", `namespace "shop.eu"`},
		{"shop/Flags_1", `name "Flags_1"`},
		{"/flags", `namespace ""`},
	}
	for _, tt := range tests {
		_, err := New(flagsync.SourceConfig{URI: tt.uri, Provider: flagsync.ProviderKubernetes}, zerolog.Nop(), clientset{client})
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (tt.wantErr == "") != (got == "") || !strings.Contains(got, tt.wantErr) {
			t.Errorf("New(%q) error = %q, want one containing %q", tt.uri, got, tt.wantErr)
		}
	}
	if _, err := New(flagsync.SourceConfig{URI: "shop/flags"}, zerolog.Nop(), nil); err == nil {
		t.Error("New without a client: no error")
	}
	s, err := New(flagsync.SourceConfig{URI: "shop/flags"}, zerolog.Nop(), clientset{client})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "shop/flags" {
		t.Errorf("Name() = %q, want shop/flags", s.Name())
	}
}

// TestInitialAndUpdates: the initial object is sent, spec changes are sent, changes
// that leave spec.flagSpec as it was are not, and other FeatureFlags are ignored.
func TestInitialAndUpdates(t *testing.T) {
	f := follow(t, fake.NewClientset(featureFlag(ns, name, "v0"), featureFlag(ns, "other", "x"), featureFlag("elsewhere", name, "y")))
	f.data(payload("v0"))
	f.watchOpen()

	f.update(featureFlag(ns, name, "v1"))
	f.data(payload("v1"))

	labelled := featureFlag(ns, name, "v1")
	labelled.Labels = map[string]string{"team": "web"}
	f.update(labelled)                            // flagSpec unchanged: nothing sent
	f.update(featureFlag(ns, "other", "x2"))      // another object: ignored
	f.update(featureFlag("elsewhere", name, "z")) // another namespace: ignored
	f.update(featureFlag(ns, name, "v2"))
	f.data(payload("v2")) // the next update is this one: the three changes before sent nothing
}

// TestListAndWatchUseTheFieldSelector: the informer asks for exactly the one object,
// in its namespace, so RBAC restricted to it by resourceNames is enough.
func TestListAndWatchUseTheFieldSelector(t *testing.T) {
	client := fake.NewClientset(featureFlag(ns, name, "v0"))
	f := follow(t, client)
	f.data(payload("v0"))
	f.watchOpen()
	type request struct{ Verb, Namespace, Resource, FieldSelector string }
	var got []request
	for _, a := range client.Actions() {
		switch a := a.(type) {
		case k8stesting.ListActionImpl:
			got = append(got, request{a.GetVerb(), a.GetNamespace(), a.GetResource().Resource, a.GetListRestrictions().Fields.String()})
		case k8stesting.WatchActionImpl:
			got = append(got, request{a.GetVerb(), a.GetNamespace(), a.GetResource().Resource, a.GetWatchRestrictions().Fields.String()})
		default:
			t.Errorf("unexpected request %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	want := []request{
		{"list", ns, "featureflags", "metadata.name=" + name},
		{"watch", ns, "featureflags", "metadata.name=" + name},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestInvalidSpec: the source delivers what the object holds; the store rejects it
// and keeps the last good flags.
func TestInvalidSpec(t *testing.T) {
	f := follow(t, fake.NewClientset(featureFlag(ns, name, "v0")))
	f.data(payload("v0"))
	f.watchOpen()
	st, err := store.New([]string{ns + "/" + name}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ns+"/"+name, []byte(payload("v0"))); err != nil {
		t.Fatal(err)
	}
	bad := featureFlag(ns, name, "v1")
	bad.Spec.FlagSpec.Flags["f"] = v1beta1.Flag{State: "ENABLED", DefaultVariant: "missing", Variants: json.RawMessage(`{"a":"v1"}`)}
	f.update(bad)
	u := f.Next()
	if u.Err != nil {
		t.Fatalf("want the invalid payload delivered, got error %v", u.Err)
	}
	if err := st.Apply(u.Source, u.Data); err == nil || !strings.Contains(err.Error(), "defaultVariant") {
		t.Errorf("store.Apply(invalid spec) = %v, want a defaultVariant problem", err)
	}
	if _, ok := st.Current().Get("f", store.Selector{}); !ok {
		t.Error("the last good flag is no longer served")
	}
}

// TestDeleteAndRecreate: a deletion is reported (the store keeps the last flags) and
// a re-created object is sent, even with the same flags, so that the error clears.
func TestDeleteAndRecreate(t *testing.T) {
	f := follow(t, fake.NewClientset(featureFlag(ns, name, "v0")))
	f.data(payload("v0"))
	f.watchOpen()
	f.remove(ns, name)
	f.Err("FeatureFlag shop/flags was deleted", "serving its last flags")
	f.create(featureFlag(ns, name, "v0"))
	f.data(payload("v0"))
}

func TestNotFoundThenCreated(t *testing.T) {
	f := follow(t, fake.NewClientset(featureFlag(ns, "other", "x")))
	f.Err("FeatureFlag flags not found in namespace shop")
	f.watchOpen()
	f.create(featureFlag(ns, name, "v0"))
	f.data(payload("v0"))
}

// TestListErrors: the API server refuses the list; the error says what to fix, and
// the flags arrive once it answers (the informer retries with backoff).
func TestListErrors(t *testing.T) {
	gr := v1beta1.Resource("featureflags")
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"forbidden", apierrors.NewForbidden(gr, "", fmt.Errorf(`User "system:serviceaccount:shop:default" cannot list resource "featureflags"`)),
			[]string{"permission denied reading FeatureFlag shop/flags", "needs list and watch on featureflags.core.openfeature.dev in namespace shop",
				"resourceNames may restrict them to [flags]", "system:serviceaccount:shop:default"}},
		{"unauthorized", apierrors.NewUnauthorized("token expired"), []string{"rejected the credentials", "shop/flags"}},
		{"crd missing", apierrors.NewNotFound(gr, ""), []string{"is the FeatureFlag CRD installed?", "shop/flags"}},
		{"server error", apierrors.NewInternalError(fmt.Errorf("etcd unavailable")), []string{"cannot list or watch FeatureFlag shop/flags", "etcd unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset(featureFlag(ns, name, "v0"))
			var refuse atomic.Bool
			refuse.Store(true)
			client.PrependReactor("list", "featureflags", func(k8stesting.Action) (bool, runtime.Object, error) {
				if refuse.Load() {
					return true, nil, tt.err
				}
				return false, nil, nil
			})
			f := follow(t, client)
			f.Err(tt.want...)
			refuse.Store(false)
			f.data(payload("v0"))
		})
	}
}

// TestStoreReadiness runs the source into a real store: not ready while the object is
// missing, ready with its flags once created, still serving them after deletion.
func TestStoreReadiness(t *testing.T) {
	client := fake.NewClientset()
	s, err := New(flagsync.SourceConfig{URI: ns + "/" + name, Provider: flagsync.ProviderKubernetes}, zerolog.Nop(), clientset{client})
	if err != nil {
		t.Fatal(err)
	}
	watching := make(chan struct{}, 100)
	s.onWatch = func() { watching <- struct{}{} }
	st, err := store.New([]string{s.Name()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { flagsync.Feed(ctx, st, []flagsync.Source{s}); close(done) }()
	defer func() {
		cancel()
		<-done
	}()
	type state struct {
		Ready   bool
		Served  bool
		Problem string
	}
	get := func() state {
		_, served := st.Current().Get("f", store.Selector{})
		status := st.Status()[0]
		problem := ""
		if status.LastError != "" {
			problem = strings.SplitN(status.LastError, ": ", 2)[1]
		}
		return state{Ready: st.Ready(), Served: served, Problem: problem}
	}
	eventually := func(want state) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !cmp.Equal(want, get()) {
			if time.Now().After(deadline) {
				t.Fatalf("store state (-want +got):\n%s", cmp.Diff(want, get()))
			}
			time.Sleep(time.Millisecond)
		}
	}
	eventually(state{Problem: "FeatureFlag flags not found in namespace shop (waiting for it to be created)"})
	select {
	case <-watching:
	case <-time.After(wait):
		t.Fatal("no watch")
	}
	if _, err := client.CoreV1beta1().FeatureFlags(ns).Create(ctx, featureFlag(ns, name, "v0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(state{Ready: true, Served: true})
	if err := client.CoreV1beta1().FeatureFlags(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(state{Ready: true, Served: true, Problem: "FeatureFlag shop/flags was deleted (serving its last flags until it is re-created)"})
}

// TestCacheHoldsNoManagedFields: a FeatureFlag written by several field managers
// (server-side apply, as kubectl, GitOps tools and controllers write) carries their
// bookkeeping; the informer of a running source keeps the object without it, and
// still serves its flags.
func TestCacheHoldsNoManagedFields(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	ffs := client.CoreV1beta1().FeatureFlags(ns)
	if _, err := ffs.Create(ctx, featureFlag(ns, name, "v0"), metav1.CreateOptions{FieldManager: "kubectl-create"}); err != nil {
		t.Fatal(err)
	}
	managers := []string{"argocd", "team-bot", "kustomize-controller", "kubectl"}
	for _, manager := range managers {
		notes := map[string]string{}
		for i := range 25 {
			notes[fmt.Sprintf("%s.example.com/note-%02d", manager, i)] = "x"
		}
		if _, err := ffs.Apply(ctx, applycorev1beta1.FeatureFlag(name, ns).WithAnnotations(notes), metav1.ApplyOptions{FieldManager: manager, Force: true}); err != nil {
			t.Fatalf("apply as %s: %v", manager, err)
		}
	}
	live, err := ffs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bookkeeping, err := json.Marshal(live.ManagedFields)
	if err != nil {
		t.Fatal(err)
	}
	if len(live.ManagedFields) != len(managers)+1 || len(bookkeeping) < 4096 {
		t.Fatalf("the stored FeatureFlag has %d managedFields entries (%d bytes), want %d of several KiB", len(live.ManagedFields), len(bookkeeping), len(managers)+1)
	}
	t.Logf("the API object carries %d managedFields entries, %d bytes of JSON", len(live.ManagedFields), len(bookkeeping))

	informers := make(chan cache.SharedIndexInformer, 1)
	s, err := New(flagsync.SourceConfig{URI: ns + "/" + name, Provider: flagsync.ProviderKubernetes}, zerolog.Nop(), clientset{client})
	if err != nil {
		t.Fatal(err)
	}
	s.onInformer = func(inf cache.SharedIndexInformer) { informers <- inf }
	updates := sourcetest.Run(t, s)
	updates.Data(payload("v0"))
	var inf cache.SharedIndexInformer
	select {
	case inf = <-informers:
	case <-time.After(wait):
		t.Fatal("Run built no informer")
	}
	cached := inf.GetStore().List()
	if len(cached) != 1 {
		t.Fatalf("the cache holds %d objects, want the FeatureFlag", len(cached))
	}
	ff, ok := cached[0].(*v1beta1.FeatureFlag)
	if !ok {
		t.Fatalf("the cache holds a %T", cached[0])
	}
	if len(ff.ManagedFields) != 0 {
		t.Errorf("the cached FeatureFlag keeps %d managedFields entries", len(ff.ManagedFields))
	}
	if len(ff.Annotations) != len(live.Annotations) || ff.ResourceVersion != live.ResourceVersion {
		t.Errorf("the cached FeatureFlag lost more than managedFields: %d annotations (want %d), resourceVersion %q (want %q)",
			len(ff.Annotations), len(live.Annotations), ff.ResourceVersion, live.ResourceVersion)
	}
}
