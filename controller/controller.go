// Package controller runs flagpole's reconcilers the way kubernetes/sample-controller
// does, without controller-runtime: informer event handlers only enqueue keys, a
// typed rate-limited workqueue per kind (per-item exponential backoff and a global
// token bucket), workers that call sync(ctx, key) — where an error means "retry" —
// and a graceful drain on shutdown: the queue stops taking keys, workers finish the
// keys they hold, and Run returns when they have.
package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/meta"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// SyncFunc reconciles one object. It returns an error only when the key should be
// retried (with backoff); a permanent problem is reported on the object (status,
// Events) and answered with nil.
type SyncFunc func(ctx context.Context, key cache.ObjectName) error

// Controller is one reconciler and its queue.
type Controller struct {
	name    string
	sync    SyncFunc
	queue   workqueue.TypedRateLimitingInterface[cache.ObjectName]
	log     zerolog.Logger
	metrics *Metrics
}

// New returns a controller named name (in logs and metrics) running sync.
func New(name string, sync SyncFunc, log zerolog.Logger, metrics *Metrics) *Controller {
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[cache.ObjectName](5*time.Millisecond, 5*time.Minute),
		&workqueue.TypedBucketRateLimiter[cache.ObjectName]{Limiter: rate.NewLimiter(rate.Limit(50), 300)},
	)
	cfg := workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: name}
	if metrics != nil {
		cfg.MetricsProvider = metrics.queueProvider()
	}
	return &Controller{name: name, sync: sync, queue: workqueue.NewTypedRateLimitingQueueWithConfig(limiter, cfg),
		log: log.With().Str("controller", name).Logger(), metrics: metrics}
}

// Name is the controller's name.
func (c *Controller) Name() string { return c.name }

// Enqueue adds the key of obj (an object, or a deletion tombstone).
func (c *Controller) Enqueue(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		c.log.Debug().Err(err).Msg("not an object; not enqueued")
		return
	}
	c.EnqueueKey(cache.ObjectName{Namespace: m.GetNamespace(), Name: m.GetName()})
}

// EnqueueKey adds a key.
func (c *Controller) EnqueueKey(key cache.ObjectName) { c.queue.Add(key) }

// EnqueueAfter adds a key after a delay (a scheduled re-check).
func (c *Controller) EnqueueAfter(key cache.ObjectName, d time.Duration) { c.queue.AddAfter(key, d) }

// Handler enqueues the object of every add, update and delete; an update that does
// not change the resourceVersion (a resync) is skipped.
func (c *Controller) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: c.Enqueue,
		UpdateFunc: func(old, obj any) {
			if o, n := rv(old), rv(obj); o != "" && o == n {
				return
			}
			c.Enqueue(obj)
		},
		DeleteFunc: c.Enqueue,
	}
}

func rv(obj any) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetResourceVersion()
}

// Run starts workers and blocks until ctx ends and the workers have finished the
// keys they hold (the queue is drained of in-flight work, not of waiting keys: those
// are reconciled by the next leader, which lists everything on start).
func (c *Controller) Run(ctx context.Context, workers int) {
	defer utilruntime.HandleCrashWithContext(ctx)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	c.log.Info().Int("workers", workers).Msg("controller started")
	<-ctx.Done()
	c.queue.ShutDownWithDrain()
	wg.Wait()
	c.log.Info().Msg("controller stopped")
}

// processNext reconciles one key; false when the queue has shut down.
func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	start := time.Now()
	err := c.safeSync(ctx, key)
	c.metrics.reconciled(c.name, err, time.Since(start))
	if err == nil {
		c.queue.Forget(key)
		return true
	}
	if ctx.Err() != nil { // shutting down: the next leader picks it up
		return true
	}
	c.log.Warn().Err(err).Str("key", key.String()).Int("retries", c.queue.NumRequeues(key)).Msg("reconcile failed; retrying")
	c.queue.AddRateLimited(key)
	return true
}

// safeSync turns a panic of the reconciler into an error (retried with backoff).
func (c *Controller) safeSync(ctx context.Context, key cache.ObjectName) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reconcile of %s panicked: %v", key, p)
		}
	}()
	return c.sync(ctx, key)
}

// Len is the number of keys waiting (tests).
func (c *Controller) Len() int { return c.queue.Len() }
