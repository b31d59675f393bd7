package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/crd/generated/clientset/versioned"
	"github.com/flagpole-dev/flagpole/crd/manifests"
	"github.com/flagpole-dev/flagpole/kube"
)

// Cluster is an API server the tests talk to as an administrator: a local
// ControlPlane, or an existing cluster named by a kubeconfig.
type Cluster struct {
	// Config is the administrator's configuration.
	Config *rest.Config
	// Kube, Flags and Extensions are administrator clients: core Kubernetes, the
	// core.openfeature.dev API, and CustomResourceDefinitions.
	Kube       kubernetes.Interface
	Flags      versioned.Interface
	Extensions apiextensionsclient.Interface
	// ControlPlane is the local control plane, nil for an existing cluster.
	ControlPlane *ControlPlane
}

// NewCluster connects to the API server of cfg.
func NewCluster(cfg *rest.Config, cp *ControlPlane) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 100, 200
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ff, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ext, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Cluster{Config: cfg, Kube: kube, Flags: ff, Extensions: ext, ControlPlane: cp}, nil
}

// LoadKubeconfig reads the kubeconfig files of a KUBECONFIG-style list (at least
// one path) with their current context, through the client configuration every
// mode uses (package kube).
func LoadKubeconfig(list string) (*rest.Config, error) {
	if len(filepath.SplitList(list)) == 0 {
		return nil, errors.New("no kubeconfig path")
	}
	return kube.Config(kube.Options{Kubeconfig: list, QPS: 100, Burst: 200, UserAgent: "flagpole-e2e"})
}

// InstallCRDs creates or updates every CRD of crd/manifests and waits until each is
// Established (its API is served).
func (c *Cluster) InstallCRDs(ctx context.Context) ([]string, error) {
	crds, err := manifests.CRDs()
	if err != nil {
		return nil, err
	}
	client := c.Extensions.ApiextensionsV1().CustomResourceDefinitions()
	var names []string
	for _, m := range crds {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(m.YAML, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		_, err := client.Create(ctx, &crd, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
		if apierrors.IsAlreadyExists(err) {
			err = retryUpdateCRD(ctx, client, &crd)
		}
		if err != nil {
			return nil, fmt.Errorf("installing CRD %s: %w", m.Name, err)
		}
		names = append(names, m.Name)
	}
	for _, name := range names {
		if err := c.WaitCRDEstablished(ctx, name); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// retryUpdateCRD replaces an existing CRD's spec with crd's.
func retryUpdateCRD(ctx context.Context, client interface {
	Get(context.Context, string, metav1.GetOptions) (*apiextensionsv1.CustomResourceDefinition, error)
	Update(context.Context, *apiextensionsv1.CustomResourceDefinition, metav1.UpdateOptions) (*apiextensionsv1.CustomResourceDefinition, error)
}, crd *apiextensionsv1.CustomResourceDefinition) error {
	for {
		cur, err := client.Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec = crd.Spec
		_, err = client.Update(ctx, cur, metav1.UpdateOptions{FieldValidation: metav1.FieldValidationStrict})
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}

// WaitCRDEstablished waits until the CRD's Established and NamesAccepted conditions
// are True.
func (c *Cluster) WaitCRDEstablished(ctx context.Context, name string) error {
	var last *apiextensionsv1.CustomResourceDefinition
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd, err := c.Extensions.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = crd
		return CRDCondition(crd, apiextensionsv1.Established) && CRDCondition(crd, apiextensionsv1.NamesAccepted), nil
	})
	if err != nil {
		var conds any
		if last != nil {
			conds = last.Status.Conditions
		}
		return fmt.Errorf("CRD %s not Established: %w (conditions: %+v)", name, err, conds)
	}
	return nil
}

// CRDCondition reports whether the CRD's condition of type t is True.
func CRDCondition(crd *apiextensionsv1.CustomResourceDefinition, t apiextensionsv1.CustomResourceDefinitionConditionType) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == t {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

// TokenKubeconfig asks the API server for a token of the ServiceAccount namespace/name
// (TokenRequest, valid for an hour) and writes a kubeconfig that authenticates with
// it to path. The server address and CA come from the administrator's configuration.
func (c *Cluster) TokenKubeconfig(ctx context.Context, namespace, name, path string) error {
	expiry := int64(3600)
	tr, err := c.Kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("TokenRequest for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	cluster := &clientcmdapi.Cluster{
		Server:                   c.Config.Host,
		CertificateAuthorityData: c.Config.CAData,
		InsecureSkipTLSVerify:    c.Config.Insecure,
		TLSServerName:            c.Config.ServerName,
	}
	if len(cluster.CertificateAuthorityData) == 0 && c.Config.CAFile != "" {
		if cluster.CertificateAuthorityData, err = os.ReadFile(c.Config.CAFile); err != nil {
			return err
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = cluster
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: name, Namespace: namespace}
	cfg.CurrentContext = "e2e"
	return clientcmd.WriteToFile(*cfg, path)
}
