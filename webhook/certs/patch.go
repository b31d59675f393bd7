package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

// errRetry marks an outcome that is retried soon without being reported: an update
// that lost a race (another replica, or a GitOps tool, wrote first).
var errRetry = errors.New("conflict; retrying")

// target is one webhook configuration whose caBundle is kept current.
type target interface {
	// start creates the informer; run runs it until ctx ends.
	start(onChange func(), onError func(error)) error
	run(ctx context.Context)
	// sync makes every webhook's caBundle equal to bundle. It reports whether the
	// configuration, as read, already carried bundle everywhere (true also when it
	// does not exist or has no webhooks: nothing there trusts another CA).
	sync(ctx context.Context, bundle []byte) (inPlace bool, err error)
	describe() string
}

// webhookTarget is a target over one kind of webhook configuration.
type webhookTarget[T runtime.Object] struct {
	kind     string // MutatingWebhookConfiguration
	resource string // mutatingwebhookconfigurations.admissionregistration.k8s.io
	name     string
	api      objects[T]
	example  T
	// bundles returns the caBundle of every webhook; withBundle a copy of the
	// object with every caBundle set.
	bundles    func(T) [][]byte
	withBundle func(T, []byte) T
	log        zerolog.Logger

	informer cache.SharedIndexInformer
	// staleRV is the resourceVersion our last update replaced: while the cache
	// still shows it, it has not seen our write yet.
	staleRV string
	absent  bool // logged as not existing
}

func mutatingTarget(api objects[*admissionregistrationv1.MutatingWebhookConfiguration], name string, log zerolog.Logger) target {
	return &webhookTarget[*admissionregistrationv1.MutatingWebhookConfiguration]{
		kind: "MutatingWebhookConfiguration", resource: "mutatingwebhookconfigurations.admissionregistration.k8s.io",
		name: name, api: api, example: &admissionregistrationv1.MutatingWebhookConfiguration{}, log: log,
		bundles: func(c *admissionregistrationv1.MutatingWebhookConfiguration) [][]byte {
			out := make([][]byte, len(c.Webhooks))
			for i := range c.Webhooks {
				out[i] = c.Webhooks[i].ClientConfig.CABundle
			}
			return out
		},
		withBundle: func(c *admissionregistrationv1.MutatingWebhookConfiguration, b []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
			c = c.DeepCopy()
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = b
			}
			return c
		},
	}
}

func validatingTarget(api objects[*admissionregistrationv1.ValidatingWebhookConfiguration], name string, log zerolog.Logger) target {
	return &webhookTarget[*admissionregistrationv1.ValidatingWebhookConfiguration]{
		kind: "ValidatingWebhookConfiguration", resource: "validatingwebhookconfigurations.admissionregistration.k8s.io",
		name: name, api: api, example: &admissionregistrationv1.ValidatingWebhookConfiguration{}, log: log,
		bundles: func(c *admissionregistrationv1.ValidatingWebhookConfiguration) [][]byte {
			out := make([][]byte, len(c.Webhooks))
			for i := range c.Webhooks {
				out[i] = c.Webhooks[i].ClientConfig.CABundle
			}
			return out
		},
		withBundle: func(c *admissionregistrationv1.ValidatingWebhookConfiguration, b []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
			c = c.DeepCopy()
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = b
			}
			return c
		},
	}
}

func (t *webhookTarget[T]) describe() string { return t.kind + " " + t.name }

func (t *webhookTarget[T]) start(onChange func(), onError func(error)) error {
	inf, err := newInformer(t.api, t.name, t.example, onChange, func(err error) { onError(t.explain("list and watch", err)) })
	if err != nil {
		return fmt.Errorf("%s: %w", t.describe(), err)
	}
	t.informer = inf
	return nil
}

func (t *webhookTarget[T]) run(ctx context.Context) { t.informer.RunWithContext(ctx) }

func (t *webhookTarget[T]) sync(ctx context.Context, bundle []byte) (bool, error) {
	obj, exists, err := cached(ctx, t.informer, t.api, t.name, t.name)
	if err != nil {
		return false, t.explain("read", err)
	}
	if !exists {
		if !t.absent {
			t.log.Debug().Str("webhookConfiguration", t.describe()).Msg("webhook configuration does not exist (yet); its caBundle is set when it is created")
			t.absent = true
		}
		return true, nil
	}
	if t.absent {
		t.log.Info().Str("webhookConfiguration", t.describe()).Msg("webhook configuration appeared")
		t.absent = false
	}
	meta, err := metaOf(obj)
	if err != nil {
		return false, err
	}
	if t.staleRV != "" && meta.GetResourceVersion() == t.staleRV {
		return false, nil // the cache has not seen our update yet; its event follows
	}
	t.staleRV = ""
	bundles := t.bundles(obj)
	drifted := 0
	for _, b := range bundles {
		if !bytes.Equal(b, bundle) {
			drifted++
		}
	}
	if drifted == 0 {
		return true, nil
	}
	updated, err := t.api.Update(ctx, t.withBundle(obj, bundle))
	switch {
	case err == nil:
	case apierrors.IsConflict(err):
		return false, fmt.Errorf("%s: %w", t.describe(), errRetry)
	case apierrors.IsNotFound(err):
		return true, nil // deleted meanwhile
	default:
		return false, t.explain("update", err)
	}
	t.staleRV = meta.GetResourceVersion()
	level := zerolog.InfoLevel
	if hadBundle(bundles) {
		level = zerolog.WarnLevel // someone (kubectl apply, a GitOps tool) changed it
	}
	newMeta, _ := metaOf(updated)
	rv := ""
	if newMeta != nil {
		rv = newMeta.GetResourceVersion()
	}
	t.log.WithLevel(level).Str("webhookConfiguration", t.describe()).Int("webhooks", len(bundles)).Int("drifted", drifted).Str("resourceVersion", rv).
		Msg("set caBundle of the webhook configuration to the current CA bundle")
	return false, nil
}

// hadBundle reports whether any webhook carried a caBundle (so a difference is
// drift, not a first setting).
func hadBundle(bundles [][]byte) bool {
	for _, b := range bundles {
		if len(b) > 0 {
			return true
		}
	}
	return false
}

// explain says what to fix when reading or updating the configuration fails.
func (t *webhookTarget[T]) explain(verb string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("permission denied to %s %s: the operator's service account needs list, watch and update on %s (resourceNames may restrict them to [%s]): %w",
			verb, t.describe(), t.resource, t.name, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server rejected the credentials (expired or invalid token) to %s %s: %w", verb, t.describe(), err)
	}
	return fmt.Errorf("cannot %s %s: %w", verb, t.describe(), err)
}
