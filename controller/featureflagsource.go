package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/kube"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// Pod template annotations the FeatureFlagSource controller reads and writes.
const (
	// AnnotationEnabled and AnnotationFeatureFlagSource are OFO's pod annotations
	// (package webhook reads them on pods).
	AnnotationEnabled           = "openfeature.dev/enabled"
	AnnotationFeatureFlagSource = "openfeature.dev/featureflagsource"
	// AnnotationRestartedAt is what `kubectl rollout restart` (and OFO) set on a pod
	// template to restart a workload's pods.
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
)

// Reasons of the FeatureFlagSource controller's conditions and Events.
const (
	ReasonResolved       = "Resolved"
	ReasonUnresolved     = "Unresolved"
	ReasonRolloutSkipped = "RolloutSkipped"
)

// maxListedProblems is how many source problems a FeatureFlagSource's Ready
// condition lists.
const maxListedProblems = 5

// Index names on the caches the FeatureFlagSource controller reads.
const (
	indexSourcesByFlag     = "flagpole.featureflagsource.byFlag"     // FeatureFlagSources by the FeatureFlags they name
	indexWorkloadsBySource = "flagpole.featureflagsource.byTemplate" // workloads by the FeatureFlagSources their pod template names
)

// FeatureFlagSource reconciles FeatureFlagSources: the Ready condition (True when
// every source would resolve for a pod of the FeatureFlagSource's namespace: a
// provider flagpole runs, FeatureFlags that exist and may be referenced, http and
// grpc sources the sidecar accepts) and observedGeneration, and — with
// rolloutOnChange — the restart of the Deployments, StatefulSets and DaemonSets
// whose pods use it, when its spec changes.
//
// A spec change is a generation above status.observedGeneration, which persists
// across operator restarts: a FeatureFlagSource seen for the first time (no
// observedGeneration) is only recorded, and a restart or resync of the operator
// restarts nothing (OFO restarts every matching Deployment on every start). A
// change of rolloutOnChange alone restarts nothing either, when the controller saw
// the previous spec. While the sources do not resolve, the rollout waits (new pods
// would be refused by the webhook) and observedGeneration stays behind.
type FeatureFlagSource struct {
	*Controller
	renderer *sidecar.Renderer
	cluster  *sidecar.Cluster
	clients  Clients
	recorder record.EventRecorder
	log      zerolog.Logger
	now      func() time.Time

	workloads []workloadKind

	mu    sync.Mutex
	acted map[cache.ObjectName]*acted
}

// workloadKind is a kind of workload whose pods the controller may restart.
type workloadKind struct {
	kind, resource string
	informer       cache.SharedIndexInformer
}

// acted is what the controller did for one FeatureFlagSource in this process.
type acted struct {
	// generation is the last generation acted on and recorded in the status, spec
	// the hash of its spec without rolloutOnChange.
	generation int64
	spec       string
	// rolling is the generation being rolled out, done the workloads restarted (or
	// skipped) for it: a retry after a partial failure restarts only the others.
	rolling int64
	done    map[string]bool
}

// NewFeatureFlagSource builds the FeatureFlagSource controller on the cluster's
// FeatureFlagSource and FeatureFlag caches, plus caches of every Deployment,
// StatefulSet and DaemonSet reduced to their identity and the OpenFeature
// annotations of their pod template (Informers: run them, and wait for them to sync
// before Run). renderer judges the sources as the pod webhook does.
func NewFeatureFlagSource(renderer *sidecar.Renderer, cluster *sidecar.Cluster, clients Clients, recorder record.EventRecorder, metrics *Metrics, log zerolog.Logger) (*FeatureFlagSource, error) {
	r := &FeatureFlagSource{renderer: renderer, cluster: cluster, clients: clients, recorder: recorder,
		log: log.With().Str("controller", "featureflagsource").Logger(), now: time.Now, acted: map[cache.ObjectName]*acted{}}
	r.Controller = New("featureflagsource", r.sync, log, metrics)
	slim := kube.InformerOptions{Transform: stripWorkload}
	r.workloads = []workloadKind{
		{"Deployment", "deployments", kube.NewInformer(clients.Apps, "deployments", &appsv1.Deployment{}, &appsv1.DeploymentList{}, slim)},
		{"StatefulSet", "statefulsets", kube.NewInformer(clients.Apps, "statefulsets", &appsv1.StatefulSet{}, &appsv1.StatefulSetList{}, slim)},
		{"DaemonSet", "daemonsets", kube.NewInformer(clients.Apps, "daemonsets", &appsv1.DaemonSet{}, &appsv1.DaemonSetList{}, slim)},
	}
	errs := []error{cluster.Sources.AddIndexers(cache.Indexers{indexSourcesByFlag: sourceFlags})}
	for _, w := range r.workloads {
		errs = append(errs, w.informer.AddIndexers(cache.Indexers{indexWorkloadsBySource: workloadSources}))
	}
	_, err := cluster.Sources.AddEventHandler(r.Handler())
	errs = append(errs, err)
	_, err = cluster.FeatureFlags.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: r.enqueueByFlag,
		UpdateFunc: func(old, obj any) {
			o, err1 := meta.Accessor(old)
			n, err2 := meta.Accessor(obj)
			if err1 == nil && err2 == nil && o.GetAnnotations()[sidecar.AnnotationAllowedNamespaces] != n.GetAnnotations()[sidecar.AnnotationAllowedNamespaces] {
				r.enqueueByFlag(obj)
			}
		},
		DeleteFunc: r.enqueueByFlag,
	})
	errs = append(errs, err)
	return r, errors.Join(errs...)
}

// Informers are the caches the controller owns: the workloads.
func (r *FeatureFlagSource) Informers() []cache.SharedIndexInformer {
	out := make([]cache.SharedIndexInformer, len(r.workloads))
	for i, w := range r.workloads {
		out[i] = w.informer
	}
	return out
}

// sourceFlags indexes a FeatureFlagSource by the FeatureFlags its sources may name
// ("namespace/name", a bare name in its own namespace); sources of other providers
// that happen to parse as names only cost a spurious re-check.
func sourceFlags(obj any) ([]string, error) {
	ffs, ok := obj.(*v1beta1.FeatureFlagSource)
	if !ok {
		return nil, nil
	}
	var keys []string
	for _, s := range ffs.Spec.Sources {
		if ref, err := sidecar.ParseRef(s.Source, ffs.Namespace); err == nil {
			keys = append(keys, ref.String())
		}
	}
	return keys, nil
}

func (r *FeatureFlagSource) enqueueByFlag(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	sources, _ := r.cluster.Sources.GetIndexer().ByIndex(indexSourcesByFlag, m.GetNamespace()+"/"+m.GetName())
	for _, s := range sources {
		r.Enqueue(s)
	}
}

// podTemplate returns a workload's pod template.
func podTemplate(obj any) (metav1.Object, *corev1.PodTemplateSpec) {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return w, &w.Spec.Template
	case *appsv1.StatefulSet:
		return w, &w.Spec.Template
	case *appsv1.DaemonSet:
		return w, &w.Spec.Template
	}
	return nil, nil
}

// stripWorkload keeps a workload's identity and the two OpenFeature annotations of
// its pod template: the caches of every workload in the cluster stay small.
func stripWorkload(obj any) (any, error) {
	m, tmpl := podTemplate(obj)
	if m == nil {
		return obj, nil
	}
	om := metav1.ObjectMeta{Namespace: m.GetNamespace(), Name: m.GetName(), ResourceVersion: m.GetResourceVersion()}
	var ann map[string]string
	for _, k := range []string{AnnotationEnabled, AnnotationFeatureFlagSource} {
		if v, ok := tmpl.Annotations[k]; ok {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}
	switch obj.(type) {
	case *appsv1.Deployment:
		return &appsv1.Deployment{ObjectMeta: om, Spec: appsv1.DeploymentSpec{Template: t}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{ObjectMeta: om, Spec: appsv1.StatefulSetSpec{Template: t}}, nil
	default:
		return &appsv1.DaemonSet{ObjectMeta: om, Spec: appsv1.DaemonSetSpec{Template: t}}, nil
	}
}

// workloadSources indexes a workload by the FeatureFlagSources its pod template's
// annotation lists (a bare name is in the workload's namespace, as the webhook
// reads it on the pods).
func workloadSources(obj any) ([]string, error) {
	m, tmpl := podTemplate(obj)
	if m == nil {
		return nil, nil
	}
	list, ok := tmpl.Annotations[AnnotationFeatureFlagSource]
	if !ok {
		return nil, nil
	}
	refs, err := sidecar.ParseRefList(list, m.GetNamespace())
	keys := make([]string, 0, len(refs))
	for _, ref := range refs {
		keys = append(keys, ref.String())
	}
	if err != nil {
		keys = nil // the webhook refuses its pods: nothing to restart
	}
	return keys, nil
}

// sync reconciles one FeatureFlagSource.
func (r *FeatureFlagSource) sync(ctx context.Context, key cache.ObjectName) error {
	obj, exists, err := r.cluster.Sources.GetIndexer().GetByKey(key.String())
	if err != nil {
		return err
	}
	if !exists {
		r.mu.Lock()
		delete(r.acted, key)
		r.mu.Unlock()
		return nil
	}
	ffs := obj.(*v1beta1.FeatureFlagSource)
	problems, err := r.problems(ctx, ffs.Namespace, ffs)
	if err != nil {
		return err
	}
	spec, err := effectiveSpec(&ffs.Spec)
	if err != nil {
		return err
	}
	r.mu.Lock()
	last := r.acted[key]
	if last == nil {
		last = &acted{}
		r.acted[key] = last
	}
	// the cache may not show the status written last: what this process did counts
	observed := max(ffs.Status.ObservedGeneration, last.generation)
	sameSpec := last.generation == observed && last.spec == spec
	r.mu.Unlock()

	changed := observed != 0 && ffs.Generation > observed // observed 0: first sight, recorded only
	rollout := changed && ffs.Spec.RolloutOnChange != nil && *ffs.Spec.RolloutOnChange && !sameSpec
	next, held := ffs.Generation, false
	if rollout {
		if len(problems) > 0 {
			next, held = observed, true
		} else if err := r.rollout(ctx, ffs, last); err != nil {
			return err
		}
	}
	if err := r.setStatus(ctx, ffs, next, problems, held); err != nil {
		return err
	}
	if !held {
		r.mu.Lock()
		last.generation, last.spec, last.rolling, last.done = ffs.Generation, spec, 0, nil
		r.mu.Unlock()
	}
	return nil
}

// problems are the messages of the sources that would not resolve for a pod of
// namespace; a failed read is an error.
func (r *FeatureFlagSource) problems(ctx context.Context, namespace string, ffs *v1beta1.FeatureFlagSource) ([]string, error) {
	var out []string
	for _, d := range r.renderer.CheckSources(ctx, namespace, ffs) {
		if d.Code >= http.StatusInternalServerError {
			return nil, d
		}
		out = append(out, d.Message)
	}
	return out, nil
}

// effectiveSpec hashes what of a spec reaches the sidecar: all but rolloutOnChange.
func effectiveSpec(spec *v1beta1.FeatureFlagSourceSpec) (string, error) {
	s := spec.DeepCopy()
	s.RolloutOnChange = nil
	data, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// rollout restarts the workloads whose pods use ffs, by setting their pod
// template's restartedAt annotation (a merge patch). Skipped: workloads whose pods
// are not injected (openfeature.dev/enabled is not "true"), and those whose pods
// the webhook would refuse with this FeatureFlagSource (another namespace it does
// not admit, or sources that do not resolve there): restarting them would take
// pods down for pods that cannot come up.
func (r *FeatureFlagSource) rollout(ctx context.Context, ffs *v1beta1.FeatureFlagSource, last *acted) error {
	ref := ffs.Namespace + "/" + ffs.Name
	r.mu.Lock()
	if last.rolling != ffs.Generation {
		last.rolling, last.done = ffs.Generation, map[string]bool{}
	}
	r.mu.Unlock()
	checked := map[string][]string{ffs.Namespace: nil} // namespace → problems there
	var errs []error
	for _, w := range r.workloads {
		objs, err := w.informer.GetIndexer().ByIndex(indexWorkloadsBySource, ref)
		if err != nil {
			return err
		}
		slices.SortFunc(objs, func(a, b any) int { return strings.Compare(objectKey(a), objectKey(b)) })
		for _, obj := range objs {
			m, tmpl := podTemplate(obj)
			if m == nil || tmpl.Annotations[AnnotationEnabled] != "true" {
				continue
			}
			id := w.kind + " " + m.GetNamespace() + "/" + m.GetName()
			r.mu.Lock()
			done := last.done[id]
			r.mu.Unlock()
			if done {
				continue
			}
			if refused := refusal(r.renderer, m.GetNamespace(), "FeatureFlagSource", ffs); refused != "" {
				// its pods are refused already; no Event: the FeatureFlagSource's
				// namespace learns nothing of a namespace it does not admit
				r.log.Info().Str("featureflagsource", ref).Str("workload", id).Str("reason", refused).Msg("not restarted")
			} else if skip, err := r.unresolved(ctx, ffs, m.GetNamespace(), checked); err != nil {
				return err
			} else if skip != "" {
				r.log.Info().Str("featureflagsource", ref).Str("workload", id).Str("reason", skip).Msg("not restarted")
				r.recorder.Eventf(ffs, corev1.EventTypeWarning, ReasonRolloutSkipped, "%s not restarted for generation %d: %s", id, ffs.Generation, skip)
			} else {
				if err := r.restart(ctx, w, m); err != nil {
					errs = append(errs, err)
					continue
				}
				r.log.Info().Str("featureflagsource", ref).Str("workload", id).Int64("generation", ffs.Generation).Msg("restarted")
				r.recorder.Eventf(ffs, corev1.EventTypeNormal, ReasonRolledOut, "restarted %s for generation %d", id, ffs.Generation)
			}
			r.mu.Lock()
			last.done[id] = true
			r.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// unresolved says why the sources of ffs would not resolve for pods of namespace,
// or "" (checked memoizes the answer per namespace).
func (r *FeatureFlagSource) unresolved(ctx context.Context, ffs *v1beta1.FeatureFlagSource, namespace string, checked map[string][]string) (string, error) {
	problems, ok := checked[namespace]
	if !ok {
		var err error
		if problems, err = r.problems(ctx, namespace, ffs); err != nil {
			return "", err
		}
		checked[namespace] = problems
	}
	if len(problems) > 0 {
		return boundedList(problems, maxListedProblems, maxConditionMessage/2), nil
	}
	return "", nil
}

// restart sets the pod template's restartedAt annotation (kubectl rollout restart's way).
func (r *FeatureFlagSource) restart(ctx context.Context, w workloadKind, m metav1.Object) error {
	body, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{AnnotationRestartedAt: r.now().UTC().Format(time.RFC3339)}}}}})
	if err != nil {
		return err
	}
	err = r.clients.Apps.Patch(types.MergePatchType).Namespace(m.GetNamespace()).Resource(w.resource).Name(m.GetName()).
		Param("fieldManager", FieldManager).Body(body).Do(ctx).Error()
	switch {
	case apierrors.IsNotFound(err):
		return nil // deleted meanwhile
	case apierrors.IsForbidden(err):
		return fmt.Errorf("restarting %s %s/%s: the operator's service account may not patch %s: %w", w.kind, m.GetNamespace(), m.GetName(), w.resource, err)
	case err != nil:
		return fmt.Errorf("restarting %s %s/%s: %w", w.kind, m.GetNamespace(), m.GetName(), err)
	}
	return nil
}

func objectKey(obj any) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetNamespace() + "/" + m.GetName()
}

// setStatus writes the FeatureFlagSource's status if it changed.
func (r *FeatureFlagSource) setStatus(ctx context.Context, ffs *v1beta1.FeatureFlagSource, observed int64, problems []string, held bool) error {
	next := ffs.Status.DeepCopy()
	next.ObservedGeneration = observed
	cond := metav1.Condition{Type: v1beta1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonResolved,
		Message: fmt.Sprintf("every source resolves (%d)", len(ffs.Spec.Sources)), ObservedGeneration: ffs.Generation,
		LastTransitionTime: metav1.NewTime(r.now())}
	if len(problems) > 0 {
		suffix := ""
		if held {
			suffix = fmt.Sprintf(" (rolloutOnChange: the restart for generation %d waits until every source resolves)", ffs.Generation)
		}
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonUnresolved
		cond.Message = boundedList(problems, maxListedProblems, maxConditionMessage-len(suffix)) + suffix
	}
	changed := meta.SetStatusCondition(&next.Conditions, cond)
	if !changed && next.ObservedGeneration == ffs.Status.ObservedGeneration {
		return nil
	}
	if len(problems) > 0 {
		r.recorder.Event(ffs, corev1.EventTypeWarning, ReasonUnresolved, cond.Message)
	}
	return patchStatus(ctx, r.clients.Flags, "featureflagsources", ffs.Namespace, ffs.Name, next)
}
