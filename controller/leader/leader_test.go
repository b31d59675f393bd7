package leader

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeLeases is an in-memory Lease store with the API server's optimistic
// concurrency (a stale resourceVersion is a Conflict) and an on/off switch for
// failures.
type fakeLeases struct {
	mu      sync.Mutex
	lease   *coordinationv1.Lease
	version int
	down    atomic.Bool
}

var leaseResource = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

func (f *fakeLeases) Get(_ context.Context, _, name string) (*coordinationv1.Lease, error) {
	if f.down.Load() {
		return nil, errors.New("connection refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease == nil {
		return nil, apierrors.NewNotFound(leaseResource, name)
	}
	return f.lease.DeepCopy(), nil
}

func (f *fakeLeases) Create(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if f.down.Load() {
		return nil, errors.New("connection refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease != nil {
		return nil, apierrors.NewAlreadyExists(leaseResource, l.Name)
	}
	f.version++
	f.lease = l.DeepCopy()
	f.lease.ResourceVersion = strconv.Itoa(f.version)
	return f.lease.DeepCopy(), nil
}

func (f *fakeLeases) Update(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if f.down.Load() {
		return nil, errors.New("connection refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease == nil || f.lease.ResourceVersion != l.ResourceVersion {
		return nil, apierrors.NewConflict(leaseResource, l.Name, errors.New("the object has been modified"))
	}
	f.version++
	f.lease = l.DeepCopy()
	f.lease.ResourceVersion = strconv.Itoa(f.version)
	return f.lease.DeepCopy(), nil
}

func (f *fakeLeases) holder() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease == nil {
		return ""
	}
	return deref(f.lease.Spec.HolderIdentity)
}

func (f *fakeLeases) transitions() int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return deref(f.lease.Spec.LeaseTransitions)
}

func candidate(t *testing.T, leases Leases, id string) *Elector {
	t.Helper()
	e, err := New(Config{Namespace: "ops", Name: "flagpole", Identity: id, LeaseDuration: 3 * time.Second,
		RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond, Log: zerolog.Nop()}, leases)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// eventually polls cond with a bounded deadline (not a timing assertion).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOneLeaderAndHandOver: of two candidates exactly one leads; when it shuts down
// it releases the Lease and the other takes over; terms never overlap.
func TestOneLeaderAndHandOver(t *testing.T) {
	leases := &fakeLeases{}
	var leaders atomic.Int32
	var overlap atomic.Bool
	lead := func(ctx context.Context) {
		if leaders.Add(1) > 1 {
			overlap.Store(true)
		}
		<-ctx.Done()
		leaders.Add(-1)
	}
	a, b := candidate(t, leases, "a"), candidate(t, leases, "b")
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA, doneB := make(chan struct{}), make(chan struct{})
	go func() { a.Run(ctxA, lead); close(doneA) }()
	eventually(t, "a leads", a.IsLeader)
	go func() { b.Run(ctxB, lead); close(doneB) }()
	time.Sleep(200 * time.Millisecond) // b campaigns a few times meanwhile
	if b.IsLeader() || leases.holder() != "a" {
		t.Fatalf("b leads while a renews (holder %q)", leases.holder())
	}
	stopA()
	<-doneA
	eventually(t, "b takes over after a releases", b.IsLeader)
	if overlap.Load() {
		t.Error("two terms overlapped")
	}
	if got := leases.transitions(); got != 0 {
		t.Errorf("leaseTransitions %d after a release (a released lease is taken without a transition)", got)
	}
	stopB()
	<-doneB
	if leases.holder() != "" {
		t.Errorf("holder after both stopped: %q", leases.holder())
	}
}

// TestLeaderStepsDownWhenItCannotRenew: with the API server unreachable the leader
// stops leading after the renew deadline (its lead context is canceled), and
// campaigns again when it comes back.
func TestLeaderStepsDownWhenItCannotRenew(t *testing.T) {
	leases := &fakeLeases{}
	a := candidate(t, leases, "a")
	var terms atomic.Int32
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go a.Run(ctx, func(ctx context.Context) { terms.Add(1); <-ctx.Done() })
	eventually(t, "a leads", a.IsLeader)
	leases.down.Store(true)
	eventually(t, "a steps down", func() bool { return !a.IsLeader() })
	leases.down.Store(false)
	eventually(t, "a leads again", func() bool { return a.IsLeader() && terms.Load() == 2 })
}

// TestExpiredLeaseIsTakenOver: a holder that vanished without releasing (a crash)
// loses the Lease once it has not been renewed for the lease duration.
func TestExpiredLeaseIsTakenOver(t *testing.T) {
	leases := &fakeLeases{}
	crashed := candidate(t, leases, "crashed")
	if ok, err := crashed.tryAcquireOrRenew(context.Background()); !ok || err != nil {
		t.Fatalf("setup: %v %v", ok, err)
	}
	b := candidate(t, leases, "b")
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go b.Run(ctx, func(ctx context.Context) { <-ctx.Done() })
	eventually(t, "b takes over the expired Lease", b.IsLeader)
	if got := leases.transitions(); got != 1 {
		t.Errorf("leaseTransitions = %d, want 1", got)
	}
}

func TestConfigChecks(t *testing.T) {
	for _, cfg := range []Config{
		{Name: "x", Identity: "a"},
		{Namespace: "ns", Name: "x"},
		{Namespace: "ns", Name: "x", Identity: "a", LeaseDuration: time.Second, RenewDeadline: 2 * time.Second},
	} {
		if _, err := New(cfg, &fakeLeases{}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
