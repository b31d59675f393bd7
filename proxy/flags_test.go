package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	fcache "k8s.io/client-go/tools/cache/testing"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// waitFor bounds every wait for a message; waits block, they never assert timing.
const waitFor = 10 * time.Second

// featureFlag is a FeatureFlag with one boolean flag "on" whose default variant
// is variant.
func featureFlag(ref Ref, variant string) *v1beta1.FeatureFlag {
	return &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name},
		Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{Flags: map[string]v1beta1.Flag{
			"on": {State: "ENABLED", Variants: json.RawMessage(`{"yes":true,"no":false}`), DefaultVariant: variant},
		}}}}
}

// defaultVariant reads the "on" flag's defaultVariant from a document.
func defaultVariant(t *testing.T, doc string) string {
	t.Helper()
	var d struct {
		Flags map[string]struct {
			DefaultVariant string `json:"defaultVariant"`
		} `json:"flags"`
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		t.Fatalf("document %s: %v", doc, err)
	}
	return d.Flags["on"].DefaultVariant
}

// fakeFlags runs Flags over a fake API server source holding the given FeatureFlags.
func fakeFlags(t testing.TB, reg prometheus.Registerer, flags ...*v1beta1.FeatureFlag) (*Flags, *fcache.FakeControllerSource, *Metrics) {
	t.Helper()
	src := fcache.NewFakeControllerSource()
	t.Cleanup(src.Shutdown)
	for _, ff := range flags {
		src.Add(ff)
	}
	inf := cache.NewSharedIndexInformer(src, &v1beta1.FeatureFlag{}, 0, cache.Indexers{})
	if err := inf.SetTransform(slim); err != nil {
		t.Fatal(err)
	}
	var m *Metrics
	if reg != nil {
		var err error
		if m, err = NewMetrics(reg); err != nil {
			t.Fatal(err)
		}
	}
	f, err := newFlags(inf, zerolog.Nop(), m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f, src, m
}

func next(t *testing.T, s *Subscription) *Payload {
	t.Helper()
	select {
	case p := <-s.C():
		return p
	case <-time.After(waitFor):
		t.Fatal("no document")
		return nil
	}
}

func quiet(t *testing.T, s *Subscription) {
	t.Helper()
	select {
	case p := <-s.C():
		t.Fatalf("unexpected document %s", p.Doc)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestFanOut: 200 subscriptions of one FeatureFlag (and 10 of another) get its
// document at once and every change, encoded once per change; the other
// FeatureFlag's subscriptions get nothing.
func TestFanOut(t *testing.T) {
	reg := prometheus.NewRegistry()
	f, src, m := fakeFlags(t, reg, featureFlag(flagA, "yes"), featureFlag(flagB, "yes"))
	ctx := context.Background()
	var subsA, subsB []*Subscription
	for i := range 210 {
		ref := flagA
		if i >= 200 {
			ref = flagB
		}
		s, err := f.Subscribe(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := defaultVariant(t, next(t, s).Doc); got != "yes" {
			t.Fatalf("first document: defaultVariant %q", got)
		}
		if ref == flagA {
			subsA = append(subsA, s)
		} else {
			subsB = append(subsB, s)
		}
	}
	src.Modify(featureFlag(flagA, "no"))
	for _, s := range subsA {
		if got := defaultVariant(t, next(t, s).Doc); got != "no" {
			t.Fatalf("update: defaultVariant %q", got)
		}
	}
	quiet(t, subsB[0])
	if got := testutil.ToFloat64(m.changes); got != 1 {
		t.Errorf("%v changes encoded, want 1", got)
	}
	if got := testutil.ToFloat64(m.messages); got != 200 {
		t.Errorf("%v messages, want 200", got)
	}
	if got := testutil.ToFloat64(m.flags); got != 2 {
		t.Errorf("%v FeatureFlags followed, want 2", got)
	}
	// a change of something else than the flags (labels, status) sends nothing
	same := featureFlag(flagA, "no")
	same.Labels = map[string]string{"team": "a"}
	src.Modify(same)
	quiet(t, subsA[0])
	for _, s := range subsB {
		s.Close()
	}
	eventually(t, "FeatureFlag B no longer followed", func() bool { return testutil.ToFloat64(m.flags) == 1 })
}

// TestSlowSubscriberGetsNewest: a subscriber that does not read keeps only the
// newest document, and the others are not held up by it.
func TestSlowSubscriberGetsNewest(t *testing.T) {
	f, src, _ := fakeFlags(t, nil, featureFlag(flagA, "yes"))
	slow, err := f.Subscribe(context.Background(), flagA)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := f.Subscribe(context.Background(), flagA)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	next(t, fast)
	for i := range 20 {
		src.Modify(featureFlag(flagA, fmt.Sprintf("v%d", i)))
		if got := defaultVariant(t, next(t, fast).Doc); got != fmt.Sprintf("v%d", i) {
			t.Fatalf("fast subscriber: %q", got)
		}
	}
	if got := defaultVariant(t, next(t, slow).Doc); got != "v19" {
		t.Errorf("slow subscriber got %q, want only the newest (v19)", got)
	}
	quiet(t, slow)
}

// TestDeletedFeatureFlag: deleting a followed FeatureFlag keeps its subscriptions
// with the last document (new ones get it too); re-creating it sends the new one;
// a FeatureFlag that does not exist and is not followed is ErrNotFound.
func TestDeletedFeatureFlag(t *testing.T) {
	f, src, _ := fakeFlags(t, nil, featureFlag(flagA, "yes"))
	ctx := context.Background()
	if _, err := f.Subscribe(ctx, flagB); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing FeatureFlag: %v", err)
	}
	if _, err := f.Current(ctx, flagB); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing FeatureFlag (Current): %v", err)
	}
	s, err := f.Subscribe(ctx, flagA)
	if err != nil {
		t.Fatal(err)
	}
	next(t, s)
	src.Delete(featureFlag(flagA, "yes"))
	eventually(t, "deletion seen", func() bool {
		_, exists, _ := f.informer.GetIndexer().GetByKey(flagA.String())
		return !exists
	})
	quiet(t, s)
	late, err := f.Subscribe(ctx, flagA)
	if err != nil {
		t.Fatalf("a deleted FeatureFlag with open streams: %v", err)
	}
	if got := defaultVariant(t, next(t, late).Doc); got != "yes" {
		t.Errorf("late subscriber: %q", got)
	}
	if p, err := f.Current(ctx, flagA); err != nil || defaultVariant(t, p.Doc) != "yes" {
		t.Errorf("Current of a deleted, followed FeatureFlag: %v, %v", p, err)
	}
	src.Add(featureFlag(flagA, "no"))
	for _, sub := range []*Subscription{s, late} {
		if got := defaultVariant(t, next(t, sub).Doc); got != "no" {
			t.Errorf("re-created: %q", got)
		}
	}
	s.Close()
	late.Close()
	src.Delete(featureFlag(flagA, "no"))
	eventually(t, "not followed and deleted: not found", func() bool {
		s, err := f.Subscribe(ctx, flagA)
		if err == nil {
			s.Close()
		}
		return errors.Is(err, ErrNotFound)
	})
}

// TestSubscribeWaitsForTheFirstList: before the informer has listed, Subscribe
// waits (bounded by its context).
func TestSubscribeWaitsForTheFirstList(t *testing.T) {
	src := fcache.NewFakeControllerSource()
	defer src.Shutdown()
	inf := cache.NewSharedIndexInformer(src, &v1beta1.FeatureFlag{}, 0, cache.Indexers{})
	f, err := newFlags(inf, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := f.Subscribe(ctx, flagA); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("not listed yet: %v", err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
