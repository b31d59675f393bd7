package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// A run under the install's identity (e2e/install_test.go starts one as a child of
// the test binary): the shared control plane writes an audit log of the operator's
// requests, the install (deploy/default, rendered) is applied to it, and flagpole's
// operator, webhook and controller processes authenticate with a token of the
// install's ServiceAccount instead of the administrator's certificate.
const (
	// InstallManifestsEnv is the path of the rendered install to apply.
	InstallManifestsEnv = "FLAGPOLE_E2E_INSTALL_MANIFESTS"
	// AuditLogEnv is where the API server writes the audit log of InstallUser's requests.
	AuditLogEnv = "FLAGPOLE_E2E_AUDIT_LOG"
	// NamespaceLogEnv is a file Namespace appends "namespace<TAB>test" lines to, so
	// that an audit event can be traced to the scenario that caused it.
	NamespaceLogEnv = "FLAGPOLE_E2E_NAMESPACE_LOG"

	// InstallNamespace and InstallServiceAccount are the operator's identity in deploy/.
	InstallNamespace      = "flagpole-system"
	InstallServiceAccount = "flagpole-operator"
	// InstallNamespaceLabel marks the namespaces the install's own webhook
	// configurations apply to in such a run (only those: the other scenarios register
	// webhooks of their own).
	InstallNamespaceLabel = "flagpole.dev/e2e-install"
)

// InstallUser is the install's ServiceAccount as the API server names it.
const InstallUser = "system:serviceaccount:" + InstallNamespace + ":" + InstallServiceAccount

// auditOptions are the control-plane options of a run under the install's
// identity: Metadata-level events of InstallUser's requests, nothing else.
func auditOptions() ControlPlaneOptions {
	path := os.Getenv(AuditLogEnv)
	if path == "" || os.Getenv(InstallManifestsEnv) == "" {
		return ControlPlaneOptions{}
	}
	policy := fmt.Sprintf(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: [%q]
  - level: None
`, InstallUser)
	return ControlPlaneOptions{AuditPolicy: []byte(policy), AuditLog: path}
}

// runAsInstall applies the install at path to the shared cluster, confines its
// webhook configurations to namespaces labelled InstallNamespaceLabel, and makes
// OperatorKubeconfig a token of its ServiceAccount.
func (s *Suite) runAsInstall(ctx context.Context, path string, log io.Writer) error {
	if s.Cluster.ControlPlane == nil {
		return fmt.Errorf("%s needs the local control plane", InstallManifestsEnv)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	objs, err := s.Cluster.ApplyManifests(ctx, data, "flagpole-e2e-install", false)
	if err != nil {
		return fmt.Errorf("applying the install %s: %w", path, err)
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{InstallNamespaceLabel: "true"}}
	for _, o := range objs {
		var err error
		switch o.GetKind() {
		case "MutatingWebhookConfiguration":
			err = ConfineWebhooks(ctx, s.Cluster, o.GetKind(), o.GetName(), sel, "")
		case "ValidatingWebhookConfiguration":
			err = ConfineWebhooks(ctx, s.Cluster, o.GetKind(), o.GetName(), sel, "")
		}
		if err != nil {
			return err
		}
	}
	kubeconfig := filepath.Join(s.Janitor.Root(), "install-operator.kubeconfig")
	if err := s.Cluster.TokenKubeconfig(ctx, InstallNamespace, InstallServiceAccount, kubeconfig); err != nil {
		return err
	}
	s.OperatorKubeconfig = kubeconfig
	fmt.Fprintf(log, "e2e: applied the install (%d objects from %s); flagpole runs as %s\n", len(objs), path, InstallUser)
	return nil
}

// kubeconfigFor is the kubeconfig flagpole's operator processes use on c.
func (s *Suite) kubeconfigFor(c *Cluster) string {
	if s.OperatorKubeconfig != "" && c == s.Cluster {
		return s.OperatorKubeconfig
	}
	return c.ControlPlane.Kubeconfig
}

// ConfineWebhooks sets the namespaceSelector of every webhook of a webhook
// configuration (kind MutatingWebhookConfiguration or
// ValidatingWebhookConfiguration) and, if baseURL is not empty, points each at
// baseURL + its service path (a webhook served on 127.0.0.1). A JSON merge patch
// cannot edit list items, so the whole list is written back.
func ConfineWebhooks(ctx context.Context, c *Cluster, kind, name string, sel *metav1.LabelSelector, baseURL string) error {
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	res := dyn.Resource(schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1",
		Resource: strings.ToLower(kind) + "s"})
	u, err := res.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
	selector, err := toMap(sel)
	if err != nil {
		return err
	}
	for i := range hooks {
		h, ok := hooks[i].(map[string]any)
		if !ok {
			continue
		}
		h["namespaceSelector"] = selector
		if baseURL != "" {
			path, _, _ := unstructured.NestedString(h, "clientConfig", "service", "path")
			if path == "" {
				path, _, _ = unstructured.NestedString(h, "clientConfig", "url")
				if i := strings.Index(path, "://"); i >= 0 {
					if j := strings.IndexByte(path[i+3:], '/'); j >= 0 {
						path = path[i+3+j:]
					}
				}
			}
			cc, _, _ := unstructured.NestedMap(h, "clientConfig")
			delete(cc, "service")
			cc["url"] = baseURL + path
			h["clientConfig"] = cc
		}
	}
	patch, err := json.Marshal(map[string]any{"webhooks": hooks})
	if err != nil {
		return err
	}
	_, err = res.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// Objects parses a YAML stream of Kubernetes objects.
func Objects(stream []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		out = append(out, u)
	}
}

// mapper maps kinds to resources through discovery, refreshed on a miss (a CRD
// applied a moment ago).
type mapper struct {
	dyn *dynamic.DynamicClient
	rm  *restmapper.DeferredDiscoveryRESTMapper
}

func (c *Cluster) mapper() (*mapper, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	return &mapper{dyn: dyn, rm: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// resource returns the client of u's resource (namespaced or not).
func (m *mapper) resource(ctx context.Context, u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	var mapping *meta.RESTMapping
	err := retryFor(ctx, 30*time.Second, func() error {
		var err error
		mapping, err = m.rm.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			m.rm.Reset()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk, u.GetName(), err)
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return m.dyn.Resource(mapping.Resource).Namespace(u.GetNamespace()), nil
	}
	return m.dyn.Resource(mapping.Resource), nil
}

// ApplyManifests applies every object of the YAML stream server-side, in order, as
// fieldManager (with dryRun: validated and admitted by the API server, nothing
// stored), and waits for each CRD to be Established before the next object.
func (c *Cluster) ApplyManifests(ctx context.Context, stream []byte, fieldManager string, dryRun bool) ([]*unstructured.Unstructured, error) {
	objs, err := Objects(stream)
	if err != nil {
		return nil, err
	}
	m, err := c.mapper()
	if err != nil {
		return nil, err
	}
	force := true
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, u := range objs {
		res, err := m.resource(ctx, u)
		if err != nil {
			return nil, err
		}
		if _, err := res.Apply(ctx, u.GetName(), u, opts); err != nil {
			return nil, fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		if u.GetKind() == "CustomResourceDefinition" && !dryRun {
			if err := c.WaitCRDEstablished(ctx, u.GetName()); err != nil {
				return nil, err
			}
		}
	}
	return objs, nil
}

// DeleteManifests deletes the objects of the YAML stream (in reverse order, as
// `kubectl delete -f` does for a kustomize build) and waits until each is gone; a
// Namespace only has to be Terminating (no namespace controller runs here). It
// returns the objects still present after timeout.
func (c *Cluster) DeleteManifests(ctx context.Context, stream []byte, timeout time.Duration) ([]string, error) {
	objs, err := Objects(stream)
	if err != nil {
		return nil, err
	}
	m, err := c.mapper()
	if err != nil {
		return nil, err
	}
	bg := metav1.DeletePropagationBackground
	for i := len(objs) - 1; i >= 0; i-- {
		u := objs[i]
		res, err := m.resource(ctx, u)
		if err != nil {
			return nil, err
		}
		if err := res.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("delete %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, u := range objs {
			res, err := m.resource(ctx, u)
			if err != nil {
				return nil, err
			}
			live, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return nil, err
			case u.GetKind() == "Namespace" && live.GetDeletionTimestamp() != nil:
			default:
				left = append(left, u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName())
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func retryFor(ctx context.Context, d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// recordNamespace appends "namespace<TAB>test" to NamespaceLogEnv's file, if set.
// Each line is one write to a file opened O_APPEND, so lines of parallel tests do
// not interleave.
func recordNamespace(t testing.TB, ns string) {
	path := os.Getenv(NamespaceLogEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Logf("namespace log: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(ns + "\t" + t.Name() + "\n"); err != nil {
		t.Logf("namespace log: %v", err)
	}
}

// ReadNamespaceLog reads the namespace → test lines written by Namespace.
func ReadNamespaceLog(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if ns, test, ok := strings.Cut(line, "\t"); ok {
			out[ns] = test
		}
	}
	return out, nil
}

// AuditEvent is what the install check reads of an audit event.
type AuditEvent struct {
	Verb      string                    `json:"verb"`
	Stage     string                    `json:"stage"`
	User      struct{ Username string } `json:"user"`
	ObjectRef *struct {
		Resource, Subresource, Namespace, Name, APIGroup string
	} `json:"objectRef"`
	ResponseStatus *struct{ Code int } `json:"responseStatus"`
	RequestURI     string              `json:"requestURI"`
}

// ReadAuditLog parses an audit log (JSON lines).
func ReadAuditLog(path string) ([]AuditEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// SortedKeys returns m's keys, sorted.
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
