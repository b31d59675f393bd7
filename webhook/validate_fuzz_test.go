package webhook

import (
	"reflect"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// FuzzValidate feeds arbitrary objects (and old objects, for UPDATE) to the four
// validating webhooks: none may panic, every answer is well formed (a denial has a
// 400 or 422 code and a message, one problem per line; an admission has neither;
// no warning spans lines), and the same request gets the same answer.
func FuzzValidate(f *testing.F) {
	for _, seed := range []struct {
		kind     uint8
		obj, old string
	}{
		{0, goodFF, ""},
		{0, badFF, goodFF},
		{0, `{"spec":{"flagSpec":{"flags":{"f":{"state":"ENABLED","variants":{"a":"a","b":"b"},"targeting":{"fractional":["k",["a",1],["b","2"]]}}},"$evaluators":{"x":{"$ref":"x"}}}}}`, ""},
		{1, `{"spec":{"sources":[{"source":"flags","provider":"kubernetes"},{"source":"https://u:p@h/f.json?t=1","provider":"http","httpSyncBearerToken":"Bearer x"},{"source":"h:1","provider":"grpc","certPath":"/c","selector":"a=b"}],"port":8015,"envVars":[{"name":"A","valueFrom":{}}],"contextValues":{"a=b":"c\\,d"},"cors":["*","a\\,b"],"otelCollectorUri":"http://[::1"}}`, ""},
		{1, `{"spec":{"sources":[{"source":"a","tls":"yes"}],"port":1.5,"resources":{"limits":{"cpu":"x"}}}}`, ""},
		{2, `{"spec":{"featureFlagSource":"a/b","ingress":{"hosts":["10.0.0.1"],"flagdPath":"x","pathType":"Exact"},"gatewayApiRoutes":{"parentRefs":[{"namespace":"Other","port":0}]}}}`, ""},
		{3, `{"spec":{"host":"a:1","selector":"x=y","cacheMaxSize":-1,"envVarPrefix":"A B"}}`, ""},
		{3, `{"spec":[]}`, `{"spec":[]}`},
	} {
		f.Add(seed.kind, []byte(seed.obj), []byte(seed.old))
	}
	hooks := ValidatingWebhooks(ValidationOptions{DefaultSyncProvider: "kubernetes"})
	f.Fuzz(func(t *testing.T, kind uint8, obj, old []byte) {
		h := hooks[int(kind)%len(hooks)]
		req := create(h.Kind, obj)
		if len(old) > 0 {
			req = update(h.Kind, old, obj)
		}
		d := run(h.Admit, req)
		if d.Allowed {
			if d.Code != 0 || d.Message != "" {
				t.Fatalf("admitted with code %d and message %q", d.Code, d.Message)
			}
		} else if (d.Code != 400 && d.Code != 422) || d.Message == "" || strings.Contains(d.Message, "\n\n") {
			t.Fatalf("denied with code %d and message %q", d.Code, d.Message)
		}
		for _, w := range d.Warnings {
			if w == "" || strings.ContainsAny(w, "\r\n") {
				t.Fatalf("warning %q", w)
			}
		}
		if again := run(h.Admit, req); !reflect.DeepEqual(d, again) {
			t.Fatalf("two answers to one request:\n%+v\n%+v", d, again)
		}
		if req.Operation == admissionv1.Update && !d.Allowed && sameMember(old, obj, "spec") {
			t.Fatalf("an update that does not change spec was denied: %q", d.Message)
		}
	})
}
