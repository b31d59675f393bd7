package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/flagdoc"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// ReasonValid is the reason of a FeatureFlag's Ready condition when its document
// compiles (ReasonInvalid when it does not).
const ReasonValid = "Valid"

// maxConditionMessage bounds the problems listed in a condition message and its
// Event (the Event API truncates messages at 1 KiB).
const maxConditionMessage = 1024

// indexConfigMapsByFlag indexes the webhook's file-source ConfigMaps by the
// FeatureFlag ("namespace/name") their AnnotationFeatureFlag names.
const indexConfigMapsByFlag = "flagpole.featureflag.configMapsByFlag"

// FeatureFlag reconciles FeatureFlags: their status (Ready, flagCount,
// observedGeneration) from flagd's strict compiler — for objects that never met the
// validating webhook (created before it ran, or while it was down) — and the
// file-provider ConfigMaps the webhook created from them, which OFO never updates:
// each keeps holding the document of the FeatureFlag's current spec, as long as it
// is valid (an invalid spec leaves the last good flags served, and the status says
// why). Only the webhook's ConfigMaps (label app.kubernetes.io/managed-by=flagpole)
// are written, in whichever namespace their pods run — as long as the FeatureFlag
// admits that namespace under the cross-namespace rule: a label and an annotation
// are no credentials, and the document must not be copied where its owner did not
// allow pods to read it.
type FeatureFlag struct {
	*Controller
	renderer *sidecar.Renderer
	cluster  *sidecar.Cluster
	clients  Clients
	recorder record.EventRecorder
	log      zerolog.Logger
	now      func() time.Time

	mu sync.Mutex
	// content is what the controller knows a ConfigMap ("namespace/name") holds
	// without reading it: the document hash at either resourceVersion, the one it
	// was patched from (the cache may still show it) and the one it wrote.
	content map[string]knownContent
}

type knownContent struct {
	hash string
	rvs  [2]string
}

// NewFeatureFlag builds the FeatureFlag controller on the cluster's FeatureFlag and
// ConfigMap caches (the latter keeps the two file-source annotations it reads,
// sidecar.KeepFileConfigMap). renderer carries the cross-namespace policy the
// webhook applies.
func NewFeatureFlag(renderer *sidecar.Renderer, cluster *sidecar.Cluster, clients Clients, recorder record.EventRecorder, metrics *Metrics, log zerolog.Logger) (*FeatureFlag, error) {
	r := &FeatureFlag{renderer: renderer, cluster: cluster, clients: clients, recorder: recorder, log: log.With().Str("controller", "featureflag").Logger(),
		now: time.Now, content: map[string]knownContent{}}
	r.Controller = New("featureflag", r.sync, log, metrics)
	if err := cluster.ConfigMaps.AddIndexers(cache.Indexers{indexConfigMapsByFlag: configMapFlag}); err != nil {
		return nil, err
	}
	_, err1 := cluster.FeatureFlags.AddEventHandler(r.Handler())
	_, err2 := cluster.ConfigMaps.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: r.enqueueFlagOf,
		UpdateFunc: func(old, obj any) {
			if rv(old) != rv(obj) {
				r.enqueueFlagOf(obj)
			}
		},
		DeleteFunc: r.forgetConfigMap,
	})
	return r, errors.Join(err1, err2)
}

// Informers are the caches the controller owns: none (it uses the cluster's).
func (r *FeatureFlag) Informers() []cache.SharedIndexInformer { return nil }

// configMapFlag indexes a ConfigMap by the FeatureFlag it holds.
func configMapFlag(obj any) ([]string, error) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || cm.Labels[sidecar.LabelManagedBy] != sidecar.ManagedBy {
		return nil, nil
	}
	if ref, err := sidecar.ParseRef(cm.Annotations[sidecar.AnnotationFeatureFlag], cm.Namespace); err == nil {
		return []string{ref.String()}, nil
	}
	return nil, nil // names no FeatureFlag: not indexed
}

func (r *FeatureFlag) enqueueFlagOf(obj any) {
	keys, _ := configMapFlag(obj)
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		r.EnqueueKey(cache.ObjectName{Namespace: ns, Name: name})
	}
}

func (r *FeatureFlag) forgetConfigMap(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if m, err := meta.Accessor(obj); err == nil {
		r.mu.Lock()
		delete(r.content, m.GetNamespace()+"/"+m.GetName())
		r.mu.Unlock()
	}
}

// sync reconciles one FeatureFlag.
func (r *FeatureFlag) sync(ctx context.Context, key cache.ObjectName) error {
	obj, exists, err := r.cluster.FeatureFlags.GetIndexer().GetByKey(key.String())
	if err != nil || !exists {
		return err // deleted: its own-namespace ConfigMaps are collected by ownership
	}
	ff := obj.(*v1beta1.FeatureFlag)
	problems := flagdoc.Validate(&ff.Spec.FlagSpec)
	var errs []error
	if len(problems) == 0 {
		errs = append(errs, r.syncConfigMaps(ctx, ff))
	}
	errs = append(errs, r.setStatus(ctx, ff, problems))
	return errors.Join(errs...)
}

// syncConfigMaps makes every file-source ConfigMap of ff hold its document.
func (r *FeatureFlag) syncConfigMaps(ctx context.Context, ff *v1beta1.FeatureFlag) error {
	ref := sidecar.Ref{Namespace: ff.Namespace, Name: ff.Name}
	objs, err := r.cluster.ConfigMaps.GetIndexer().ByIndex(indexConfigMapsByFlag, ref.String())
	if err != nil || len(objs) == 0 {
		return err
	}
	doc, err := flagdoc.Encode(&ff.Spec.FlagSpec)
	if err != nil {
		return err // Validate encodes it first: not reached
	}
	hash := sidecar.FlagsHash(doc)
	cms := make([]*corev1.ConfigMap, 0, len(objs))
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			cms = append(cms, cm)
		}
	}
	slices.SortFunc(cms, func(a, b *corev1.ConfigMap) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	var errs []error
	for _, cm := range cms {
		errs = append(errs, r.syncConfigMap(ctx, ff, ref, cm, doc, hash))
	}
	return errors.Join(errs...)
}

// syncConfigMap writes doc into one ConfigMap unless it holds it already: its hash
// annotation says so, or the controller knows it (it wrote it, or read it, at the
// cached resourceVersion). A ConfigMap without the annotation (as the webhook
// creates them) is read once: the webhook wrote the document of its time, which is
// usually still the current one.
func (r *FeatureFlag) syncConfigMap(ctx context.Context, ff *v1beta1.FeatureFlag, ref sidecar.Ref, cm *corev1.ConfigMap, doc []byte, hash string) error {
	key := cm.Namespace + "/" + cm.Name
	if cm.Annotations[sidecar.AnnotationFlagsHash] == hash || r.knows(key, cm.ResourceVersion, hash) {
		return nil
	}
	if reason := refusal(r.renderer, cm.Namespace, "FeatureFlag", ff); reason != "" {
		r.log.Info().Str("featureflag", ref.String()).Str("configmap", key).Str("reason", reason).Msg("file-source ConfigMap not updated")
		return nil
	}
	dataKey := sidecar.FileConfigMapKey(ref)
	from := cm.ResourceVersion
	if cm.Annotations[sidecar.AnnotationFlagsHash] == "" {
		var live corev1.ConfigMap
		err := r.clients.Core.Get().Namespace(cm.Namespace).Resource("configmaps").Name(cm.Name).Do(ctx).Into(&live)
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return fmt.Errorf("reading ConfigMap %s: %w", key, err)
		case live.Labels[sidecar.LabelManagedBy] != sidecar.ManagedBy || live.Annotations[sidecar.AnnotationFeatureFlag] != ref.String():
			return nil // no longer the webhook's, or another flag's
		case live.Data[dataKey] == string(doc):
			r.remember(key, hash, cm.ResourceVersion, live.ResourceVersion)
			return nil
		}
		from = live.ResourceVersion
	}
	// resourceVersion makes the patch apply to the version known to be flagpole's
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": from, "annotations": map[string]string{sidecar.AnnotationFlagsHash: hash}},
		"data":     map[string]string{dataKey: string(doc)},
	})
	if err != nil {
		return err
	}
	var out corev1.ConfigMap
	err = r.clients.Core.Patch(types.MergePatchType).Namespace(cm.Namespace).Resource("configmaps").Name(cm.Name).
		Param("fieldManager", FieldManager).Body(body).Do(ctx).Into(&out)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err): // changed meanwhile: its update event brings the flag back
		r.log.Debug().Str("configmap", key).Msg("ConfigMap changed while it was updated; checked again")
		return nil
	case apierrors.IsForbidden(err):
		return fmt.Errorf("updating ConfigMap %s: the operator's service account may not patch configmaps there: %w", key, err)
	case err != nil:
		return fmt.Errorf("updating ConfigMap %s: %w", key, err)
	}
	r.remember(key, hash, cm.ResourceVersion, out.ResourceVersion)
	r.log.Info().Str("featureflag", ref.String()).Str("configmap", key).Int64("generation", ff.Generation).Msg("file-source ConfigMap updated")
	r.recorder.Eventf(ff, corev1.EventTypeNormal, ReasonConfigMapUpdated, "ConfigMap %s now holds the flags of generation %d", key, ff.Generation)
	return nil
}

// refusal says why the cross-namespace rule keeps obj (of kind) from workloads of
// namespace, or "".
func refusal(r *sidecar.Renderer, namespace, kind string, obj metav1.Object) string {
	if d := r.CrossNamespaceCheck(namespace, kind, obj); d != nil {
		return d.Message
	}
	return ""
}

func (r *FeatureFlag) knows(key, rv, hash string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.content[key]
	return ok && k.hash == hash && rv != "" && (k.rvs[0] == rv || k.rvs[1] == rv)
}

func (r *FeatureFlag) remember(key, hash, cachedRV, liveRV string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.content[key] = knownContent{hash: hash, rvs: [2]string{cachedRV, liveRV}}
}

// setStatus writes the FeatureFlag's status if it changed.
func (r *FeatureFlag) setStatus(ctx context.Context, ff *v1beta1.FeatureFlag, problems eval.Problems) error {
	next := ff.Status.DeepCopy()
	next.ObservedGeneration = ff.Generation
	count := int32(min(len(ff.Spec.FlagSpec.Flags), math.MaxInt32))
	next.FlagCount = &count
	cond := metav1.Condition{Type: v1beta1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonValid,
		Message: fmt.Sprintf("the flags compile with flagd's strict rules (flagCount %d)", count), ObservedGeneration: ff.Generation,
		LastTransitionTime: metav1.NewTime(r.now())}
	if len(problems) > 0 {
		lines := make([]string, len(problems))
		for i, p := range problems {
			lines[i] = p.String()
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalid, boundedList(lines, 0, maxConditionMessage)
	}
	changed := meta.SetStatusCondition(&next.Conditions, cond)
	if !changed && next.ObservedGeneration == ff.Status.ObservedGeneration && ff.Status.FlagCount != nil && *ff.Status.FlagCount == count {
		return nil
	}
	if len(problems) > 0 {
		r.recorder.Event(ff, corev1.EventTypeWarning, ReasonInvalid, cond.Message)
	}
	return patchStatus(ctx, r.clients.Flags, "featureflags", ff.Namespace, ff.Name, next)
}

// boundedList joins at most maxItems items (0: no limit) with "; " in at most
// maxBytes bytes: the items that fit whole, then how many were left out.
func boundedList(items []string, maxItems, maxBytes int) string {
	var b strings.Builder
	for i, it := range items {
		more := ""
		if rest := len(items) - i - 1; rest > 0 {
			more = fmt.Sprintf("; ... and %d more", rest)
		}
		sep := ""
		if i > 0 {
			sep = "; "
		}
		if (maxItems > 0 && i == maxItems) || b.Len()+len(sep)+len(it)+len(more) > maxBytes {
			if i == 0 { // the first item alone is too long: cut it
				if cut := maxBytes - len(more) - len("..."); cut > 0 {
					b.WriteString(truncateUTF8(it, cut) + "...")
				}
				b.WriteString(more)
				return b.String()
			}
			fmt.Fprintf(&b, "; ... and %d more", len(items)-i)
			return b.String()
		}
		b.WriteString(sep + it)
	}
	return b.String()
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
