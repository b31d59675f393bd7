package webhook

import (
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// Checks shared by several kinds.

// port returns the port at path: def when unset (0: the API server applies the CRD
// default), 0 after recording a problem when it is out of range.
func port(r *report, path string, value, def int32) int32 {
	switch {
	case value == 0:
		return def
	case value < 1 || value > 65535:
		r.problemf(path, "must be from 1 to 65535, got %d", value)
		return 0
	}
	return value
}

// namedPort is a port and the field it comes from.
type namedPort struct {
	path  string
	value int32
}

// distinctPorts records a problem for each port that repeats an earlier one or a
// reserved port (value: what it is), at the later field as the CRD's CEL rules do.
func distinctPorts(r *report, ports []namedPort, reserved map[int32]string) {
	for i, p := range ports {
		if p.value == 0 {
			continue
		}
		if what, ok := reserved[p.value]; ok {
			r.problemf(p.path, "%d is %s: each listener of the sidecar needs its own port", p.value, what)
			continue
		}
		for _, q := range ports[:i] {
			if q.value == p.value {
				r.problemf(p.path, "%d is also %s: each listener of the sidecar needs its own port", p.value, q.path)
				break
			}
		}
	}
}

// envVarPrefix checks envVarPrefix and returns the prefix in effect. A prefix other
// than FLAGD is valid but the OpenFeature flagd providers read FLAGD_* variables only.
func envVarPrefix(r *report, path, prefix string) string {
	if prefix == "" {
		return v1beta1.DefaultEnvVarPrefix
	}
	if errs := validation.IsEnvVarName(prefix); len(errs) > 0 {
		r.problemf(path, "%q is not a valid environment variable name: %s", prefix, strings.Join(errs, "; "))
		return prefix
	}
	if prefix != v1beta1.DefaultEnvVarPrefix {
		r.warnf(path, "OpenFeature's flagd providers read FLAGD_* variables only: with prefix %q, applications must pass the %s_* values to their provider themselves", prefix, prefix)
	}
	return prefix
}

// envVarKey is the name an envVars entry gets (OFO's EnvVarKey): prefix_name, or the
// name alone when the prefix is blank or, where passthrough applies (FeatureFlagSource),
// for the cloud credential variables the blob providers read unprefixed.
func envVarKey(prefix, name string, passthrough bool) string {
	if strings.TrimSpace(prefix) == "" {
		return name
	}
	if passthrough {
		for _, p := range []string{"AZURE_STORAGE", "AWS_", "GOOGLE_"} {
			if strings.HasPrefix(name, p) {
				return name
			}
		}
	}
	return prefix + "_" + name
}

// credentialName matches environment variable names that usually hold secrets.
var credentialName = regexp.MustCompile(`(?i)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)`)

// envVars checks envVars entries as the operator renders them (prefixed names, one
// value source) against what a pod accepts, and warns about duplicates, names the
// operator sets itself (reserved: suffix -> the field it comes from) and credentials
// in plain text.
func envVars(r *report, path, prefix string, vars []corev1.EnvVar, passthrough bool, reserved map[string]string, kind string) {
	seen := map[string]int{}
	for i, e := range vars {
		p := eval.Index(path, i)
		if e.Name == "" {
			r.problemf(p+".name", "is required")
			continue
		}
		name := envVarKey(prefix, e.Name, passthrough)
		if errs := validation.IsEnvVarName(name); len(errs) > 0 {
			r.problemf(p+".name", "%q (set as %q) is not a valid environment variable name: %s", e.Name, name, strings.Join(errs, "; "))
			continue
		}
		if j, dup := seen[name]; dup {
			r.warnf(p+".name", "%s is also set by %s: the last one wins", name, eval.Index(path, j))
		}
		seen[name] = i
		for suffix, field := range reserved {
			if name == envVarKey(prefix, suffix, false) {
				r.warnf(p+".name", "the operator sets %s itself (%s)", name, field)
			}
		}
		if e.ValueFrom != nil {
			if e.Value != "" {
				r.warnf(p, "value and valueFrom are both set: value is used")
			} else {
				envVarSource(r, p+".valueFrom", e.ValueFrom)
			}
		}
		if e.Value != "" && credentialName.MatchString(e.Name) {
			r.warnf(p+".value", "%s looks like a credential stored in plain text: anyone who can read this %s or the pods can read it; prefer a Secret (valueFrom.secretKeyRef)", e.Name, kind)
		}
	}
}

// envVarSource checks that a valueFrom names exactly one source, with the fields a
// pod requires.
func envVarSource(r *report, path string, s *corev1.EnvVarSource) {
	var set []string
	if s.ConfigMapKeyRef != nil {
		set = append(set, "configMapKeyRef")
		if s.ConfigMapKeyRef.Key == "" {
			r.problemf(path+".configMapKeyRef.key", "is required")
		}
	}
	if s.FieldRef != nil {
		set = append(set, "fieldRef")
		if s.FieldRef.FieldPath == "" {
			r.problemf(path+".fieldRef.fieldPath", "is required")
		}
	}
	if s.FileKeyRef != nil {
		set = append(set, "fileKeyRef")
	}
	if s.ResourceFieldRef != nil {
		set = append(set, "resourceFieldRef")
		if s.ResourceFieldRef.Resource == "" {
			r.problemf(path+".resourceFieldRef.resource", "is required")
		}
	}
	if s.SecretKeyRef != nil {
		set = append(set, "secretKeyRef")
		if s.SecretKeyRef.Key == "" {
			r.problemf(path+".secretKeyRef.key", "is required")
		}
	}
	if len(set) != 1 {
		r.problemf(path, "must set exactly one of configMapKeyRef, fieldRef, fileKeyRef, resourceFieldRef and secretKeyRef, got %d: the pod would be refused", len(set))
	}
}

// host checks a host name or IP address (no port, no brackets).
func host(r *report, path, h string) {
	if _, err := netip.ParseAddr(h); err == nil {
		return
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		r.problemf(path, "%q: give the host alone, without a port", h)
		return
	}
	if errs := validation.IsDNS1123Subdomain(strings.ToLower(strings.TrimSuffix(h, "."))); len(errs) > 0 {
		r.problemf(path, "%q is neither a DNS name nor an IP address: %s", h, strings.Join(errs, "; "))
	}
}

// selector checks a flagd selector (flagSetId=<id>, source=<uri>, or a bare source).
func selector(r *report, path, s string) {
	if _, err := store.ParseSelector(s); err != nil {
		r.problemf(path, "flagd's sync service refuses it: %v", err)
	}
}

// shown is a source, URL or origin as answers quote it: store.Redact (user info and
// query of a URL), and for what is not an absolute URL, everything after '?' or '#'
// and everything before the last '@' cut as well, so that no answer echoes a
// credential written in the wrong place.
func shown(s string) string {
	if r := store.Redact(s); r != s {
		return r
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?redacted"
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = "redacted@" + s[i+1:]
	}
	return s
}

// otelCollectorURI checks an OTLP/gRPC collector address as flagd mode reads
// --otel-collector-uri: host:port, http://host:port or https://host:port, a port
// from 1 to 65535, no path, no credentials. The value is quoted redacted.
func otelCollectorURI(r *report, path, uri string) {
	shown := shown(uri)
	if !strings.Contains(uri, "://") {
		h, p, err := net.SplitHostPort(uri)
		if err != nil || h == "" {
			r.problemf(path, "%q: want host:port, http://host:port or https://host:port", shown)
			return
		}
		collectorPort(r, path, shown, p)
		return
	}
	u, err := url.Parse(uri)
	if err != nil {
		r.problemf(path, "%q is not a URL: want host:port, http://host:port or https://host:port", shown)
		return
	}
	switch {
	case u.User != nil:
		r.problemf(path, "credentials in the URI are not supported (they would be readable in the pod spec)")
	case u.Scheme != "http" && u.Scheme != "https":
		r.problemf(path, "%q: scheme %q is not supported (OTLP over gRPC: host:port, http://host:port or https://host:port)", shown, u.Scheme)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		r.problemf(path, "%q: OTLP/gRPC has no path, query or fragment: want %s://host:port", shown, u.Scheme)
	case u.Hostname() == "" || u.Port() == "":
		r.problemf(path, "%q: want %s://host:port (the port is required)", shown, u.Scheme)
	default:
		collectorPort(r, path, shown, u.Port())
	}
}

func collectorPort(r *report, path, shown, p string) {
	if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
		r.problemf(path, "%q: port %q is not a number from 1 to 65535", shown, p)
	}
}

// resources checks requests against limits (a pod whose request exceeds its limit is
// refused) and that no quantity is negative.
func resources(r *report, path string, res corev1.ResourceRequirements) {
	for _, list := range []struct {
		name string
		l    corev1.ResourceList
	}{{"requests", res.Requests}, {"limits", res.Limits}} {
		for _, name := range sortedResourceNames(list.l) {
			if q := list.l[name]; q.Sign() < 0 {
				r.problemf(eval.Key(path+"."+list.name, string(name)), "must not be negative, got %s", q.String())
			}
		}
	}
	for _, name := range sortedResourceNames(res.Requests) {
		req := res.Requests[name]
		if lim, ok := res.Limits[name]; ok && req.Cmp(lim) > 0 {
			r.problemf(eval.Key(path+".requests", string(name)), "%s is more than the limit %s: the pod would be refused", req.String(), lim.String())
		}
	}
}

func sortedResourceNames(l corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// sortedKeys returns a map's keys in order, so that problems come in a stable order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
