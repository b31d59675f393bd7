// Package leader elects one leader among the replicas of the operator with a
// coordination.k8s.io/v1 Lease, the algorithm of client-go's leaderelection: a
// candidate takes the Lease when it is free or its holder has not renewed it for
// LeaseDuration (measured on the candidate's own clock, from when it last saw the
// record change, so clock skew between nodes does not matter), the leader renews it
// every RetryPeriod and gives up leading when it could not renew for RenewDeadline,
// and a leader that shuts down releases the Lease so another replica takes over at
// once. Writes are optimistic (resourceVersion), so two candidates never both win.
//
// It is a package of its own, not client-go's, because client-go's imports
// resourcelock, whose typed clients register every built-in API group at start-up
// (docs/architecture.md, "One lean binary").
package leader

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/flagpole-dev/flagpole/kube"
)

// Config describes one election.
type Config struct {
	Namespace, Name string // the Lease
	Identity        string // this candidate (the pod name, unique per replica)
	// LeaseDuration is how long a Lease that is not renewed keeps other candidates
	// away; RenewDeadline how long the leader keeps trying to renew before it stops
	// leading; RetryPeriod how often candidates try and the leader renews. Defaults:
	// 15 s, 10 s, 2 s (client-go's and controller-runtime's).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Log                                       zerolog.Logger
	// now is the clock (tests).
	now func() time.Time
}

// Leases reads and writes Lease objects (a REST client in the binary, a fake in tests).
type Leases interface {
	Get(ctx context.Context, namespace, name string) (*coordinationv1.Lease, error)
	Create(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// Elector runs one candidate.
type Elector struct {
	cfg    Config
	leases Leases

	leading atomic.Bool
	// observed is the last Lease seen, and when (on our clock) it last changed.
	observed     *coordinationv1.Lease
	observedTime time.Time
}

// New checks cfg and returns an elector using leases.
func New(cfg Config, leases Leases) (*Elector, error) {
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = 10 * time.Second
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	switch {
	case cfg.Namespace == "" || cfg.Name == "":
		return nil, errors.New("leader election: the Lease needs a namespace and a name")
	case cfg.Identity == "":
		return nil, errors.New("leader election: no identity (set POD_NAME)")
	case cfg.LeaseDuration <= cfg.RenewDeadline:
		return nil, fmt.Errorf("leader election: the lease duration %s must exceed the renew deadline %s", cfg.LeaseDuration, cfg.RenewDeadline)
	case cfg.RenewDeadline <= cfg.RetryPeriod*6/5:
		return nil, fmt.Errorf("leader election: the renew deadline %s must exceed 1.2 × the retry period %s", cfg.RenewDeadline, cfg.RetryPeriod)
	}
	return &Elector{cfg: cfg, leases: leases}, nil
}

// NewREST returns an elector whose Leases are read and written through a REST client
// of coordination.k8s.io/v1.
func NewREST(cfg Config, rc *rest.Config) (*Elector, error) {
	client, err := kube.RESTClient(rc, coordinationv1.SchemeGroupVersion, coordinationv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	return New(cfg, restLeases{client})
}

// IsLeader reports whether this candidate leads right now (for metrics and readiness).
func (e *Elector) IsLeader() bool { return e.leading.Load() }

// Run campaigns until ctx ends. Each time it wins, lead runs with a context that is
// canceled when leadership is lost or ctx ends; Run waits for lead to return before
// it campaigns again (so two terms never overlap in this process) and, on shutdown,
// releases the Lease.
func (e *Elector) Run(ctx context.Context, lead func(context.Context)) {
	for ctx.Err() == nil {
		if !e.acquire(ctx) {
			return
		}
		e.leading.Store(true)
		e.cfg.Log.Info().Str("lease", e.cfg.Namespace+"/"+e.cfg.Name).Str("identity", e.cfg.Identity).Msg("became the leader")
		term, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			lead(term)
		}()
		e.renew(term)
		stop()
		<-done
		e.leading.Store(false)
		if ctx.Err() != nil {
			e.release()
			e.cfg.Log.Info().Str("identity", e.cfg.Identity).Msg("stopped leading: shutting down; Lease released")
			return
		}
		e.cfg.Log.Warn().Str("identity", e.cfg.Identity).Msg("lost the leadership; campaigning again")
	}
}

// acquire tries every RetryPeriod (with jitter) until this candidate holds the Lease
// or ctx ends.
func (e *Elector) acquire(ctx context.Context) bool {
	for {
		ok, err := e.tryAcquireOrRenew(ctx)
		if ok {
			return true
		}
		if err != nil {
			e.cfg.Log.Warn().Err(err).Msg("leader election")
		}
		if !sleep(ctx, jitter(e.cfg.RetryPeriod)) {
			return false
		}
	}
}

// renew keeps the Lease until a renewal has failed for RenewDeadline or ctx ends.
func (e *Elector) renew(ctx context.Context) {
	for {
		deadline := e.cfg.now().Add(e.cfg.RenewDeadline)
		for {
			rctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
			ok, err := e.tryAcquireOrRenew(rctx)
			cancel()
			if ok {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				e.cfg.Log.Warn().Err(err).Msg("renewing the Lease")
			}
			if !e.cfg.now().Before(deadline) {
				return
			}
			if !sleep(ctx, e.cfg.RetryPeriod) {
				return
			}
		}
		if !sleep(ctx, e.cfg.RetryPeriod) {
			return
		}
	}
}

// tryAcquireOrRenew takes or renews the Lease; it reports whether this candidate
// holds it now.
func (e *Elector) tryAcquireOrRenew(ctx context.Context) (bool, error) {
	now := e.cfg.now()
	nowMicro := metav1.NewMicroTime(now)
	seconds := int32(min(e.cfg.LeaseDuration/time.Second, math.MaxInt32)) //nolint:gosec // G115: bounded by the min
	lease, err := e.leases.Get(ctx, e.cfg.Namespace, e.cfg.Name)
	if apierrors.IsNotFound(err) {
		transitions := int32(0)
		created, err := e.leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &e.cfg.Identity, LeaseDurationSeconds: &seconds,
				AcquireTime: &nowMicro, RenewTime: &nowMicro, LeaseTransitions: &transitions},
		})
		if err != nil {
			return false, fmt.Errorf("creating Lease %s/%s: %w", e.cfg.Namespace, e.cfg.Name, err)
		}
		e.observe(created, now)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Lease %s/%s: %w", e.cfg.Namespace, e.cfg.Name, err)
	}
	if e.observed == nil || e.observed.ResourceVersion != lease.ResourceVersion {
		e.observe(lease, now)
	}
	holder := deref(lease.Spec.HolderIdentity)
	held := holder != "" && holder != e.cfg.Identity
	if held && e.observedTime.Add(time.Duration(deref(lease.Spec.LeaseDurationSeconds))*time.Second).After(now) {
		return false, nil // another candidate holds a Lease that has not expired
	}
	next := lease.DeepCopy()
	next.Spec.HolderIdentity, next.Spec.LeaseDurationSeconds, next.Spec.RenewTime = &e.cfg.Identity, &seconds, &nowMicro
	if holder != e.cfg.Identity {
		transitions := deref(lease.Spec.LeaseTransitions)
		if holder != "" {
			transitions++
		}
		next.Spec.AcquireTime, next.Spec.LeaseTransitions = &nowMicro, &transitions
	}
	updated, err := e.leases.Update(ctx, next)
	if err != nil {
		return false, fmt.Errorf("updating Lease %s/%s: %w", e.cfg.Namespace, e.cfg.Name, err)
	}
	e.observe(updated, now)
	return true, nil
}

// observe records the Lease seen and when.
func (e *Elector) observe(lease *coordinationv1.Lease, now time.Time) {
	e.observed, e.observedTime = lease, now
}

// release gives the Lease up (holder cleared, duration 1 s) if this candidate still
// holds it, so the next leader does not wait for the lease to expire.
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RenewDeadline)
	defer cancel()
	lease, err := e.leases.Get(ctx, e.cfg.Namespace, e.cfg.Name)
	if err != nil || deref(lease.Spec.HolderIdentity) != e.cfg.Identity {
		return
	}
	next := lease.DeepCopy()
	empty, one, now := "", int32(1), metav1.NewMicroTime(e.cfg.now())
	next.Spec.HolderIdentity, next.Spec.LeaseDurationSeconds, next.Spec.RenewTime, next.Spec.AcquireTime = &empty, &one, &now, &now
	if _, err := e.leases.Update(ctx, next); err != nil {
		e.cfg.Log.Warn().Err(err).Msg("releasing the Lease")
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// jitter spreads candidates' retries: d to 1.2 d.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1)) //nolint:gosec // G404: retry jitter, not a secret
}

// sleep waits d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// restLeases is Leases over a REST client.
type restLeases struct{ rc rest.Interface }

func (r restLeases) Get(ctx context.Context, namespace, name string) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	return out, r.rc.Get().Namespace(namespace).Resource("leases").Name(name).Do(ctx).Into(out)
}

func (r restLeases) Create(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	return out, r.rc.Post().Namespace(lease.Namespace).Resource("leases").Body(lease).Do(ctx).Into(out)
}

func (r restLeases) Update(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	return out, r.rc.Put().Namespace(lease.Namespace).Resource("leases").Name(lease.Name).Body(lease).Do(ctx).Into(out)
}
