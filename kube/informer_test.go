package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// bookkept is a ConfigMap as the API server returns it after several field
// managers applied to it: managedFields with an entry per manager.
func bookkept(name string, managers int) corev1.ConfigMap {
	cm := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: "7",
		Annotations: map[string]string{}}, Data: map[string]string{"flags.json": "{}"}}
	for m := range managers {
		fields := map[string]any{}
		for i := range 20 {
			key := fmt.Sprintf("manager-%d.example.com/note-%02d", m, i)
			cm.Annotations[key] = "x"
			fields["f:"+key] = map[string]any{}
		}
		raw, _ := json.Marshal(map[string]any{"f:metadata": map[string]any{"f:annotations": fields}}) //nolint:errchkjson // maps of strings
		cm.ManagedFields = append(cm.ManagedFields, metav1.ManagedFieldsEntry{Manager: fmt.Sprintf("manager-%d", m),
			Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: raw}})
	}
	return cm
}

// TestNewInformerDropsManagedFields: the informers of every flagpole mode but the
// kubernetes source and the webhook's certificate objects come from NewInformer;
// whatever Transform a caller adds, the cache holds no managedFields, and the
// caller's Transform sees the object without them.
func TestNewInformerDropsManagedFields(t *testing.T) {
	list := corev1.ConfigMapList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMapList"},
		ListMeta: metav1.ListMeta{ResourceVersion: "7"}, Items: []corev1.ConfigMap{bookkept("a", 4), bookkept("b", 3)}}
	for _, item := range list.Items {
		if len(item.ManagedFields) < 3 {
			t.Fatalf("fixture %s has %d managedFields entries", item.Name, len(item.ManagedFields))
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "true" { // a watch that sends nothing until the informer stops
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		if err := json.NewEncoder(w).Encode(list); err != nil {
			t.Error(err)
		}
	}))
	t.Cleanup(srv.Close)
	rc, err := RESTClient(&rest.Config{Host: srv.URL, QPS: -1}, corev1.SchemeGroupVersion, corev1.AddToScheme)
	if err != nil {
		t.Fatal(err)
	}

	var sawManagedFields atomic.Int64
	keepMeta := func(obj any) (any, error) { // a transform that keeps all of ObjectMeta, as some do
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return obj, nil
		}
		sawManagedFields.Add(int64(len(cm.ManagedFields)))
		return &corev1.ConfigMap{ObjectMeta: cm.ObjectMeta}, nil
	}
	for name, opts := range map[string]InformerOptions{
		"no transform":         {},
		"a caller's transform": {Namespace: "ns", Transform: keepMeta},
	} {
		t.Run(name, func(t *testing.T) {
			inf := NewInformer(rc, "configmaps", &corev1.ConfigMap{}, &corev1.ConfigMapList{}, opts)
			ctx := t.Context()
			go inf.RunWithContext(ctx)
			deadline, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if !cache.WaitForCacheSync(deadline.Done(), inf.HasSynced) {
				t.Fatal("the informer did not sync")
			}
			objs := inf.GetStore().List()
			if len(objs) != len(list.Items) {
				t.Fatalf("the cache holds %d objects, want %d", len(objs), len(list.Items))
			}
			for _, obj := range objs {
				cm, ok := obj.(*corev1.ConfigMap)
				if !ok {
					t.Fatalf("the cache holds a %T", obj)
				}
				if len(cm.ManagedFields) != 0 {
					t.Errorf("%s cached with %d managedFields entries", cm.Name, len(cm.ManagedFields))
				}
				if len(cm.Annotations) < 60 {
					t.Errorf("%s cached with %d annotations: more than managedFields was dropped", cm.Name, len(cm.Annotations))
				}
			}
		})
	}
	if n := sawManagedFields.Load(); n != 0 {
		t.Errorf("the caller's transform saw %d managedFields entries", n)
	}
}
