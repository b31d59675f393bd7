// Package webhook is flagpole's admission webhook server: the OpenFeature
// Operator's pod mutation (sidecar injection) and validation of the
// core.openfeature.dev kinds, with the same annotations and CRs as OFO.
//
// One generic Handler turns HTTP into AdmissionReview v1 and back (body limit,
// content type, decoding errors as denials, the request UID echoed, panics
// recovered into denials); the admit functions behind it are pure: from the request
// and informer caches they compute a Decision — allowed or denied, a JSONPatch,
// warnings, and the side effects (RBAC grants, ConfigMaps, Secrets) the admission
// needs. The handler applies those effects before answering, never on dry-run and
// never for a denied request. Admit functions are therefore tested without a server
// or an API server.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/rs/zerolog"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Decision is what an admit function decides about one request.
type Decision struct {
	Allowed bool
	// Code and Message explain a denial (Code defaults to 403 Forbidden); an allowed
	// request may carry a Message too (OFO's "OpenFeature is disabled").
	Code    int32
	Message string
	// Patch is a JSONPatch (RFC 6902) to apply to the object; nil for none.
	Patch    []byte
	Warnings []string
	// Effects are the writes this admission needs (applied by the Handler, in order,
	// before it answers; skipped on dry-run; never applied for a denial). If one
	// fails, the request is denied with the error.
	Effects []Effect
}

// Allow admits the request unchanged.
func Allow(message string) Decision { return Decision{Allowed: true, Message: message} }

// Deny refuses the request with an HTTP-like code (403 when 0) and a message.
func Deny(code int32, format string, args ...any) Decision {
	if code == 0 {
		code = http.StatusForbidden
	}
	return Decision{Code: code, Message: fmt.Sprintf(format, args...)}
}

// The side effects of admissions; package sidecar defines the kinds (RBAC grants,
// ConfigMaps, Secrets).
type (
	// Effect is one side effect of an admission.
	Effect = sidecar.Effect
	// EffectApplier applies the effects of admissions.
	EffectApplier = sidecar.EffectApplier
)

// AdmitFunc decides about one admission request. It must not write to the API
// server; what it needs written it returns as Effects.
type AdmitFunc func(ctx context.Context, req *admissionv1.AdmissionRequest) Decision

// Handler serves one webhook path: POST of an AdmissionReview v1 in JSON.
type Handler struct {
	Name    string // the webhook's name in logs and metrics ("mutate-pods", ...)
	Admit   AdmitFunc
	Effects EffectApplier // may be nil when Admit never returns effects
	Log     zerolog.Logger
	Metrics *Metrics // may be nil
	// MaxBody bounds the request body; 0 means DefaultMaxBody.
	MaxBody int64
}

// DefaultMaxBody bounds an AdmissionReview: an object and its old version (etcd
// stores objects up to 1.5 MiB each), JSON-escaped, with room to spare.
const DefaultMaxBody = 8 << 20

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "admission webhooks answer POST only", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "Content-Type must be application/json (an AdmissionReview)", http.StatusUnsupportedMediaType)
		return
	}
	limit := h.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.reply(w, http.StatusRequestEntityTooLarge, "", Deny(http.StatusRequestEntityTooLarge, "AdmissionReview larger than %d bytes", limit), start)
			return
		}
		h.reply(w, http.StatusBadRequest, "", Deny(http.StatusBadRequest, "reading the request: %v", err), start)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		h.reply(w, http.StatusBadRequest, "", Deny(http.StatusBadRequest, "the body is not an AdmissionReview: %v", err), start)
		return
	}
	if review.Request == nil {
		h.reply(w, http.StatusBadRequest, "", Deny(http.StatusBadRequest, "the AdmissionReview has no request"), start)
		return
	}
	uid := review.Request.UID
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		h.reply(w, http.StatusOK, uid, Deny(http.StatusBadRequest, "want an AdmissionReview of apiVersion %s, got kind %q of apiVersion %q (register the webhook with admissionReviewVersions: [v1])",
			admissionv1.SchemeGroupVersion, review.Kind, review.APIVersion), start)
		return
	}
	d := h.decide(r.Context(), review.Request)
	if d.Allowed && len(d.Effects) > 0 && (review.Request.DryRun == nil || !*review.Request.DryRun) {
		if err := h.apply(r.Context(), d.Effects); err != nil {
			d = Deny(http.StatusInternalServerError, "%v", err)
		}
	}
	h.reply(w, http.StatusOK, uid, d, start)
}

// decide runs the admit function; a panic becomes a denial (the request is not
// admitted by accident) and is logged with its stack.
func (h *Handler) decide(ctx context.Context, req *admissionv1.AdmissionRequest) (d Decision) {
	defer func() {
		if p := recover(); p != nil {
			h.Log.Error().Str("webhook", h.Name).Str("uid", string(req.UID)).Interface("panic", p).
				Str("stack", string(debug.Stack())).Msg("admission panicked; denying")
			d = Deny(http.StatusInternalServerError, "internal error in webhook %s; the request was not admitted", h.Name)
		}
	}()
	return h.Admit(ctx, req)
}

// apply performs the effects in order and stops at the first failure.
func (h *Handler) apply(ctx context.Context, effects []Effect) error {
	if h.Effects == nil {
		return fmt.Errorf("webhook %s: no way to apply %s", h.Name, effects[0].Describe())
	}
	for _, e := range effects {
		if err := h.Effects.Apply(ctx, e); err != nil {
			return fmt.Errorf("%s: %w", e.Describe(), err)
		}
	}
	return nil
}

// reply writes the AdmissionReview response and records the outcome.
func (h *Handler) reply(w http.ResponseWriter, status int, uid types.UID, d Decision, start time.Time) {
	resp := &admissionv1.AdmissionResponse{UID: uid, Allowed: d.Allowed, Warnings: d.Warnings}
	if !d.Allowed || d.Message != "" {
		code := d.Code
		if code == 0 && !d.Allowed {
			code = http.StatusForbidden
		}
		if code == 0 {
			code = http.StatusOK
		}
		resp.Result = &metav1.Status{Code: code, Message: d.Message}
		if !d.Allowed {
			resp.Result.Status = metav1.StatusFailure
			resp.Result.Reason = reasonFor(code)
		}
	}
	if d.Allowed && len(d.Patch) > 0 {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = d.Patch, &pt
	}
	out := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}, Response: resp}
	body, err := json.Marshal(&out)
	if err != nil { // cannot happen with these types; answer something the API server understands
		status, body = http.StatusInternalServerError, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"allowed":false}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	h.Metrics.observe(h.Name, d, time.Since(start))
	level := zerolog.DebugLevel
	if !d.Allowed {
		level = zerolog.InfoLevel
	}
	h.Log.WithLevel(level).Str("webhook", h.Name).Str("uid", string(uid)).Bool("allowed", d.Allowed).Int("patch_bytes", len(d.Patch)).
		Int("effects", len(d.Effects)).Str("message", d.Message).Msg("admission")
}

// reasonFor maps a denial code to the Status reason kubectl shows.
func reasonFor(code int32) metav1.StatusReason {
	switch code {
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	case http.StatusRequestEntityTooLarge:
		return metav1.StatusReasonRequestEntityTooLarge
	case http.StatusInternalServerError:
		return metav1.StatusReasonInternalError
	case http.StatusUnprocessableEntity:
		return metav1.StatusReasonInvalid
	}
	return metav1.StatusReasonForbidden
}
