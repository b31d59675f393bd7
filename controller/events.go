package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// Reasons of the Events the controllers record, for what a user must see.
const (
	ReasonApplied          = "Applied"
	ReasonInvalid          = "Invalid"
	ReasonSourceNotFound   = "FeatureFlagSourceNotFound"
	ReasonConflict         = "Conflict" // a child's name is taken by someone else's object
	ReasonRolledOut        = "RolledOut"
	ReasonGrantRemoved     = "GrantRemoved"
	ReasonConfigMapUpdated = "ConfigMapUpdated"
)

// eventWriteTimeout bounds each Event write (the recorder has no context).
const eventWriteTimeout = 10 * time.Second

// eventSink writes Events through a core/v1 REST client (client-go's EventSinkImpl
// lives in the typed clientset, which the binary does not link).
type eventSink struct{ rc rest.Interface }

func (s eventSink) do(req *rest.Request) (*corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), eventWriteTimeout)
	defer cancel()
	out := &corev1.Event{}
	return out, req.Do(ctx).Into(out)
}

// Create implements record.EventSink.
func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	return s.do(s.rc.Post().Namespace(e.Namespace).Resource("events").Body(e))
}

// Update implements record.EventSink.
func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	return s.do(s.rc.Put().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e))
}

// Patch implements record.EventSink.
func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	return s.do(s.rc.Patch(types.StrategicMergePatchType).Namespace(e.Namespace).Resource("events").Name(e.Name).Body(data))
}

// NewRecorder returns an Event recorder for the controllers (component "flagpole")
// writing through core, and a function that stops it. Its scheme knows the kinds
// Events are recorded on.
func NewRecorder(core rest.Interface) (record.EventRecorder, func()) {
	scheme := runtime.NewScheme()
	_ = v1beta1.AddToScheme(scheme)
	_ = corev1.AddToScheme(scheme)
	b := record.NewBroadcaster()
	b.StartRecordingToSink(eventSink{core})
	return b.NewRecorder(scheme, corev1.EventSource{Component: "flagpole"}), b.Shutdown
}
