// Package kube is the one place every mode gets its Kubernetes client configuration
// from: where the credentials come from (an explicit kubeconfig, KUBECONFIG, the
// in-cluster service account, ~/.kube/config), the client's rate limits and user
// agent, and REST clients whose scheme holds only the types they are given.
//
// It never imports client-go's generated clientset or kubernetes/scheme: those
// register every built-in API group at start-up, which the flagd sidecar (the same
// binary) would pay for in memory and start-up time (docs/architecture.md, "One lean
// binary").
package kube

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options says where to find the cluster and how to talk to it.
type Options struct {
	// Kubeconfig is a kubeconfig path, or a KUBECONFIG-style list of paths. Empty:
	// KUBECONFIG when it is set, else the in-cluster service account, else
	// ~/.kube/config (flagd's order).
	Kubeconfig string
	// Context is the kubeconfig context to use; empty: the current context.
	Context string
	// QPS and Burst limit the client's request rate; 0 keeps client-go's defaults
	// (5 and 10), enough for a sidecar's one watch but not for an operator.
	QPS   float32
	Burst int
	// UserAgent names the component in the API server's logs and audit events.
	UserAgent string
}

// Config returns the REST configuration the options describe. Errors say which
// source of credentials was tried.
func Config(o Options) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case o.Kubeconfig != "":
		cfg, err = fromKubeconfig(filepath.SplitList(o.Kubeconfig), o.Context)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", o.Kubeconfig, err)
		}
	case os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		cfg, err = fromKubeconfig(filepath.SplitList(os.Getenv(clientcmd.RecommendedConfigPathEnvVar)), o.Context)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig from %s: %w", clientcmd.RecommendedConfigPathEnvVar, err)
		}
	default:
		cfg, err = rest.InClusterConfig()
		if err != nil && !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("in-cluster configuration: %w", err)
		}
		if cfg == nil {
			cfg, err = fromKubeconfig([]string{clientcmd.RecommendedHomeFile}, o.Context)
			if err != nil {
				return nil, fmt.Errorf("not in a cluster and no usable kubeconfig (KUBECONFIG or %s): %w", clientcmd.RecommendedHomeFile, err)
			}
		}
	}
	if o.QPS > 0 {
		cfg.QPS = o.QPS
	}
	if o.Burst > 0 {
		cfg.Burst = o.Burst
	}
	if o.UserAgent != "" {
		cfg.UserAgent = o.UserAgent
	}
	return cfg, nil
}

// fromKubeconfig loads the kubeconfig files in precedence order (as KUBECONFIG).
func fromKubeconfig(paths []string, context string) (*rest.Config, error) {
	if len(paths) == 0 {
		return nil, errors.New("no kubeconfig path")
	}
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: paths}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
}

// RESTClient returns a JSON REST client for one API group version whose scheme
// knows only the types that addToScheme registers (plus the meta types every
// request needs). The core group ("") is served under /api, the others under /apis.
func RESTClient(cfg *rest.Config, gv schema.GroupVersion, addToScheme ...func(*runtime.Scheme) error) (*rest.RESTClient, error) {
	scheme := runtime.NewScheme()
	for _, add := range addToScheme {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
		}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath = "/apis"
	if gv.Group == "" {
		cfg.APIPath = "/api"
	}
	cfg.GroupVersion = &gv
	cfg.ContentType = runtime.ContentTypeJSON
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
	}
	return rc, nil
}
