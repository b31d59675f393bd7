package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// FieldManager owns every field flagpole applies.
const FieldManager = "flagpole"

// ApplyPatch encodes a typed object as a server-side apply patch: its JSON without
// null members and without status (which an apply to the main resource ignores).
// Typed objects are encoded instead of client-go's apply configurations because
// those import client-go's scheme of every built-in API group
// (docs/architecture.md, "One lean binary"); the object must carry its apiVersion
// and kind, and only the fields the controller means to own.
func ApplyPatch(obj runtime.Object) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc["apiVersion"] == nil || doc["kind"] == nil {
		return nil, fmt.Errorf("apply %T: apiVersion and kind must be set", obj)
	}
	delete(doc, "status")
	return json.Marshal(pruneNulls(doc))
}

// pruneNulls removes null members (unset pointers and zero metav1.Time values
// encode as null; applying null would claim and clear the field).
func pruneNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
				continue
			}
			t[k] = pruneNulls(e)
		}
	case []any:
		for i, e := range t {
			t[i] = pruneNulls(e)
		}
	}
	return v
}

// Apply server-side applies obj to resource (plural, e.g. "deployments") through
// rc with the flagpole field manager, forcing ownership of the fields it sets (a
// conflicting edit by someone else is repaired, which is the point).
func Apply(ctx context.Context, rc rest.Interface, resource string, namespace, name string, obj runtime.Object) error {
	patch, err := ApplyPatch(obj)
	if err != nil {
		return err
	}
	return ApplyBytes(ctx, rc, resource, namespace, name, patch)
}

// ApplyBytes server-side applies an apply patch (see ApplyPatch).
func ApplyBytes(ctx context.Context, rc rest.Interface, resource string, namespace, name string, patch []byte) error {
	req := rc.Patch(types.ApplyPatchType).Resource(resource).Name(name).
		Param("fieldManager", FieldManager).Param("force", "true").Body(patch)
	if namespace != "" {
		req = req.Namespace(namespace)
	}
	if err := req.Do(ctx).Error(); err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("applying %s %s/%s: the operator's service account may not patch %s: %w", resource, namespace, name, resource, err)
		}
		return fmt.Errorf("applying %s %s/%s: %w", resource, namespace, name, err)
	}
	return nil
}

// UpToDate reports whether the live object (as an informer cached it) already has
// every field of the apply patch with the same value, so that applying would change
// nothing: in steady state the controllers write nothing. Maps must contain the
// patch's members (the server adds defaults); lists of objects must hold, at the
// same positions, elements that contain the patch's; other values must be equal.
func UpToDate(patch []byte, live runtime.Object) bool {
	data, err := json.Marshal(live)
	if err != nil {
		return false
	}
	var want, have any
	if json.Unmarshal(patch, &want) != nil || json.Unmarshal(data, &have) != nil {
		return false
	}
	if m, ok := want.(map[string]any); ok {
		delete(m, "apiVersion") // typed objects read from a REST client lose their TypeMeta
		delete(m, "kind")
	}
	return contains(have, want)
}

func contains(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return len(w) == 0 && have == nil
		}
		for k, wv := range w {
			hv, present := h[k]
			if !present {
				if isEmpty(wv) {
					continue // an empty value the server omits
				}
				return false
			}
			if !contains(hv, wv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok {
			return len(w) == 0 && have == nil
		}
		if len(h) != len(w) {
			return false
		}
		for i := range w {
			if !contains(h[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(have, want)
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	case string:
		return t == ""
	case bool:
		return !t
	}
	// A number is never empty: a zero in an apply patch comes from a pointer or a
	// field without omitempty, which the server keeps (a PodDisruptionBudget's
	// minAvailable 0 edited into maxUnavailable must count as drift).
	return v == nil
}

// patchStatus replaces an object's status through its status subresource with a
// JSON merge patch ({"status": ...}); the controllers own the whole status.
func patchStatus(ctx context.Context, rc rest.Interface, resource, namespace, name string, status any) error {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	err = rc.Patch(types.MergePatchType).Namespace(namespace).Resource(resource).Name(name).SubResource("status").Body(body).Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("updating the status of %s %s/%s: %w", resource, namespace, name, err)
	}
	return nil
}
