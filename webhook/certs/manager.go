package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// maxWrites bounds the Secret writes (and races lost) of one reconcile.
const maxWrites = 5

// manager is the self-managed mode: the Secret, the serving certificate and the
// caBundles.
type manager struct {
	namespace, name, key string
	purpose              string
	api                  clients
	pol                  policy
	clk                  clock.Clock
	recheck              time.Duration
	log                  zerolog.Logger
	targets              []target

	kickc   chan struct{}
	serving atomic.Pointer[tls.Certificate]
	// bundle is the CA bundle of the Secret last reconciled; onBundle is called
	// when it changes.
	bundle   atomic.Pointer[[]byte]
	onBundle func()

	mu      sync.Mutex
	lastErr error

	// The state below belongs to run's goroutine.
	secrets cache.SharedIndexInformer
	// written is the Secret as we last wrote it and staleRV the resourceVersion
	// that write replaced ("" for a create): while the cache still shows staleRV,
	// it has not seen our write and written is the truth.
	written *corev1.Secret
	staleRV string
	// pubCA is the fingerprint of the signing CA first seen in every caBundle at
	// pubAt.
	pubCA string
	pubAt time.Time
	// watchErrs are list and watch failures already logged (each logged once until
	// a reconcile succeeds).
	watchErrs map[string]bool
	// reconciled, for tests, is called after every reconcile with the clock's time
	// at its start.
	reconciled func(time.Time)
}

func newManager(o Options, h hosts, api clients, clk clock.Clock) *manager {
	log := o.Log.With().Str("secret", o.Namespace+"/"+o.SecretName).Logger()
	m := &manager{
		namespace: o.Namespace, name: o.SecretName, key: o.Namespace + "/" + o.SecretName, purpose: o.Purpose,
		api: api, clk: clk, recheck: o.Recheck, log: log,
		pol: policy{caLifetime: o.CALifetime, servingLifetime: o.ServingLifetime, hosts: h,
			propagation: o.Propagation},
		kickc: make(chan struct{}, 1), onBundle: o.OnCABundle,
	}
	for _, n := range o.MutatingWebhookConfigurations {
		m.targets = append(m.targets, mutatingTarget(api.mutating, n, log))
	}
	for _, n := range o.ValidatingWebhookConfigurations {
		m.targets = append(m.targets, validatingTarget(api.validating, n, log))
	}
	return m
}

func (m *manager) certificate() *tls.Certificate { return m.serving.Load() }

func (m *manager) caBundle() []byte {
	if b := m.bundle.Load(); b != nil {
		return *b
	}
	return nil
}

// publishBundle makes bundle the one caBundle returns, and tells onBundle when it
// changed.
func (m *manager) publishBundle(bundle []byte) {
	if len(bundle) == 0 || bytes.Equal(m.caBundle(), bundle) {
		return
	}
	m.bundle.Store(&bundle)
	if m.onBundle != nil {
		m.onBundle()
	}
}

func (m *manager) lastError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastErr
}

func (m *manager) setError(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastErr = err
}

// kick asks for a reconcile (coalesced).
func (m *manager) kick() {
	select {
	case m.kickc <- struct{}{}:
	default:
	}
}

func (m *manager) run(ctx context.Context) error {
	// errc carries informer list and watch failures to this goroutine.
	errc := make(chan error, 16)
	onError := func(err error) {
		switch {
		case ctx.Err() != nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
			apierrors.IsResourceExpired(err), apierrors.IsGone(err):
			return // a watch ending normally; the informer re-lists
		}
		select {
		case errc <- err:
		default: // the loop is busy; the informer retries and reports again
		}
	}
	inf, err := newInformer(m.api.secrets, m.name, &corev1.Secret{}, m.kick, func(err error) { onError(m.explainSecret("list and watch", err)) })
	if err != nil {
		return fmt.Errorf("%s certificates: Secret %s: %w", m.purpose, m.key, err)
	}
	m.secrets = inf
	for _, t := range m.targets {
		if err := t.start(m.kick, onError); err != nil {
			return fmt.Errorf("%s certificates: %w", m.purpose, err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { m.secrets.RunWithContext(ctx) })
	for _, t := range m.targets {
		wg.Go(func() { t.run(ctx) })
	}
	m.log.Info().Int("webhookConfigurations", len(m.targets)).Stringer("caLifetime", m.pol.caLifetime).
		Stringer("servingLifetime", m.pol.servingLifetime).Msg("managing the webhook's certificates")

	m.watchErrs = map[string]bool{}
	backoff := time.Duration(0)
	for {
		start := m.clk.Now()
		next, err := m.reconcile(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, errRetry):
			m.log.Debug().Err(err).Msg("lost a race; retrying")
		case err != nil:
			m.setError(err)
			m.log.Warn().Err(err).Msg("cannot keep the webhook's certificates current; retrying")
		default:
			m.setError(nil)
			clear(m.watchErrs)
		}
		var wait time.Duration
		wait, backoff = delay(err, next, start, backoff, m.recheck)
		if m.reconciled != nil {
			m.reconciled(start)
		}
		timer := m.clk.NewTimer(wait)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-m.kickc:
				break wait
			case <-timer.C():
				break wait
			case err := <-errc:
				if msg := err.Error(); !m.watchErrs[msg] {
					m.watchErrs[msg] = true
					m.log.Warn().Err(err).Msg("cannot watch; retrying")
					if m.lastError() == nil {
						m.setError(err)
					}
				}
			}
		}
		timer.Stop()
	}
}

// delay says how long to wait after a reconcile that started at start, returned
// next (zero: no timed event) and err, and the backoff to remember: the recheck
// interval; a second after a lost race; after an error a backoff doubling from a
// second up to the recheck interval; and never past next, so that no retry's
// backoff delays a renewal (but an overdue next does not make failures retry
// without a pause).
func delay(err error, next, start time.Time, backoff, recheck time.Duration) (wait, newBackoff time.Duration) {
	wait = recheck
	switch {
	case errors.Is(err, errRetry):
		wait = time.Second
	case err != nil:
		backoff = min(max(2*backoff, time.Second), recheck)
		wait = backoff
	default:
		backoff = 0
	}
	if !next.IsZero() && (err == nil || next.After(start)) {
		wait = min(wait, max(next.Sub(start), 0))
	}
	return wait, backoff
}

// reconcile brings the Secret, the served certificate and the caBundles up to date
// and returns when to look again (zero: no timed event).
func (m *manager) reconcile(ctx context.Context) (time.Time, error) {
	now := m.clk.Now()
	sec, exists, err := m.readSecret(ctx)
	if err != nil {
		return time.Time{}, m.explainSecret("read", err)
	}
	var mat *material
	for writes := 0; ; {
		var data map[string][]byte
		if exists {
			data = sec.Data
		}
		mat = check(data, now, m.pol.hosts)
		p, err := m.pol.plan(mat, now, m.published)
		if err != nil {
			return time.Time{}, fmt.Errorf("Secret %s: %w", m.key, err)
		}
		if p.changes == nil {
			break
		}
		if writes++; writes > maxWrites {
			return time.Time{}, fmt.Errorf("Secret %s: still changing after %d writes (another writer, or a skewed clock, disagrees): %s", m.key, maxWrites, strings.Join(p.why, "; "))
		}
		written, err := m.writeSecret(ctx, sec, exists, p.changes)
		switch {
		case err == nil:
			level := zerolog.InfoLevel
			if p.repair {
				level = zerolog.WarnLevel
			}
			m.log.WithLevel(level).Strs("changes", p.why).Str("resourceVersion", written.ResourceVersion).Msg("wrote the Secret")
			sec, exists = written, true
			continue
		case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err), apierrors.IsNotFound(err):
			// Another replica (or someone) wrote first: read what is there now and
			// decide again; it is usually adopted as is.
			m.log.Debug().Err(err).Msg("the Secret changed under us; reading it again")
			if err := m.sleep(ctx, writes); err != nil {
				return time.Time{}, err
			}
			m.written = nil
			sec, exists, err = read(ctx, m.api.secrets, m.name)
			if err != nil {
				return time.Time{}, m.explainSecret("read", err)
			}
			continue
		default:
			return time.Time{}, m.explainWrite(sec, exists, err)
		}
	}
	m.serve(mat)
	bundle := mat.bundle()
	m.publishBundle(bundle)
	var errs []error
	retry := false
	inPlace := true
	for _, t := range m.targets {
		ok, err := t.sync(ctx, bundle)
		switch {
		case errors.Is(err, errRetry):
			retry = true
		case err != nil:
			errs = append(errs, err)
		}
		inPlace = inPlace && ok
	}
	if fp := fingerprint(mat.cas[0]); inPlace && m.pubCA != fp {
		m.pubCA, m.pubAt = fp, now
		m.log.Debug().Str("ca", fp).Msg("the signing CA is in every caBundle")
	}
	next := m.pol.next(mat, now, m.published)
	if len(errs) == 0 && retry {
		return next, errRetry
	}
	return next, errors.Join(errs...)
}

// published implements the published func for the policy.
func (m *manager) published(ca *x509.Certificate) (time.Time, bool) {
	if m.pubCA == fingerprint(ca) {
		return m.pubAt, true
	}
	return time.Time{}, false
}

// readSecret reads the Secret from the cache (or the API server before the cache
// has synced), or what we wrote while the cache has not seen it. What we wrote is
// forgotten once the cache shows something else than the version it replaced; a
// read from the API server does not forget it: the cache, syncing later, may
// still list the replaced version (acting on it wrote again, and lost a conflict).
func (m *manager) readSecret(ctx context.Context) (*corev1.Secret, bool, error) {
	fromCache := m.secrets != nil && m.secrets.HasSynced()
	sec, exists, err := cached(ctx, m.secrets, m.api.secrets, m.key, m.name)
	if err != nil {
		return nil, false, err
	}
	if m.written != nil {
		if behind := (m.staleRV == "" && !exists) || (exists && sec.ResourceVersion == m.staleRV); behind {
			return m.written, true, nil
		}
		if fromCache {
			m.written = nil
		}
	}
	return sec, exists, nil
}

// writeSecret creates the Secret or updates it (with its resourceVersion) with
// changes applied, and remembers the write.
func (m *manager) writeSecret(ctx context.Context, sec *corev1.Secret, exists bool, changes map[string][]byte) (*corev1.Secret, error) {
	var out *corev1.Secret
	var err error
	staleRV := ""
	if !exists {
		out, err = m.api.secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m.name, Namespace: m.namespace, Labels: map[string]string{
				"app.kubernetes.io/managed-by": "flagpole", "app.kubernetes.io/component": m.purpose}},
			Type: corev1.SecretTypeTLS,
			Data: apply(nil, changes),
		})
	} else {
		cp := sec.DeepCopy()
		cp.Data = apply(cp.Data, changes)
		staleRV = sec.ResourceVersion
		out, err = m.api.secrets.Update(ctx, cp)
	}
	if err != nil {
		return nil, err
	}
	m.written, m.staleRV = out, staleRV
	return out, nil
}

// sleep waits a little before re-reading after a lost race, longer each time.
func (m *manager) sleep(ctx context.Context, attempt int) error {
	//nolint:gosec // G404: retry jitter needs no cryptographic randomness
	d := time.Duration(attempt) * (20*time.Millisecond + rand.N(30*time.Millisecond))
	t := time.NewTimer(d) // real time: a race with another writer, not a renewal
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// serve makes the material's serving certificate the one served.
func (m *manager) serve(mat *material) {
	if mat.serving == nil {
		return
	}
	if cur := m.serving.Load(); cur != nil && cur.Leaf.Equal(mat.serving.Leaf) {
		return
	}
	m.serving.Store(mat.serving)
	leaf := mat.serving.Leaf
	m.log.Info().Str("serial", leaf.SerialNumber.Text(16)).Time("notAfter", leaf.NotAfter).
		Str("ca", fingerprint(mat.issuer)).Strs("dnsNames", leaf.DNSNames).Int("ips", len(leaf.IPAddresses)).
		Msg("serving a new certificate")
}

// explainSecret says what to fix when reading the Secret fails.
func (m *manager) explainSecret(verb string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("permission denied to %s Secret %s: the operator's service account needs list and watch on secrets in namespace %s (resourceNames may restrict them to [%s]): %w",
			verb, m.key, m.namespace, m.name, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server rejected the credentials (expired or invalid token) to %s Secret %s: %w", verb, m.key, err)
	}
	return fmt.Errorf("cannot %s Secret %s: %w", verb, m.key, err)
}

// explainWrite says what to fix when creating or updating the Secret fails.
func (m *manager) explainWrite(sec *corev1.Secret, exists bool, err error) error {
	switch {
	case !exists && apierrors.IsForbidden(err):
		return fmt.Errorf("permission denied to create Secret %s: the operator's service account needs create on secrets in namespace %s (create cannot be restricted by resourceNames), or create the Secret yourself (it may be empty): %w",
			m.key, m.namespace, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("permission denied to update Secret %s: the operator's service account needs update on secrets in namespace %s (resourceNames may restrict it to [%s]): %w",
			m.key, m.namespace, m.name, err)
	case exists && sec.Immutable != nil && *sec.Immutable:
		return fmt.Errorf("Secret %s is immutable and needs new certificates: delete it and it is re-created: %w", m.key, err)
	case exists && apierrors.IsInvalid(err):
		return fmt.Errorf("the API server refused the update of Secret %s (type %s): delete it and it is re-created as a kubernetes.io/tls Secret: %w", m.key, sec.Type, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server rejected the credentials (expired or invalid token) to write Secret %s: %w", m.key, err)
	}
	verb := "update"
	if !exists {
		verb = "create"
	}
	return fmt.Errorf("cannot %s Secret %s: %w", verb, m.key, err)
}

// metaOf returns the object's metadata.
func metaOf(obj runtime.Object) (metav1.Object, error) {
	return meta.Accessor(obj)
}
