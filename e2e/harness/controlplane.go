package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// serviceCIDR is --service-cluster-ip-range; serviceIP is its first address,
	// the kubernetes Service's.
	serviceCIDR = "10.96.0.0/24"
	serviceIP   = "10.96.0.1"
	// ServiceAccountIssuer is the issuer of service-account tokens (--service-account-issuer).
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// readyTimeout bounds the wait for etcd and for kube-apiserver's /readyz.
	readyTimeout = 90 * time.Second
	// stopGrace is how long a stopped component may take to exit before it is killed.
	stopGrace = 15 * time.Second
)

// ControlPlane is etcd and kube-apiserver running as local processes on loopback
// ports, with RBAC authorization, client-certificate authentication for the admin
// and service-account tokens (TokenRequest) for everyone else. There is no
// kube-controller-manager and no scheduler: see e2e/README.md.
type ControlPlane struct {
	// Dir holds the data, key material, logs and the admin kubeconfig.
	Dir string
	// Kubeconfig is the path of the admin kubeconfig (client certificate in
	// system:masters).
	Kubeconfig string
	// Config is the admin configuration.
	Config *rest.Config
	// URL is the API server's https://127.0.0.1:port.
	URL string
	// WebhookClientCA is the PEM file of the CA of the client certificate
	// (WebhookClientName) the API server presents to every admission webhook that
	// asks for one (its AdmissionConfiguration's kubeConfigFile names it for "*"):
	// `flagpole webhook --webhook-client-ca` takes it.
	WebhookClientCA string
	// WebhookClientCert and WebhookClientKey are that client certificate and its
	// key, for tests that call a webhook as the API server does.
	WebhookClientCert, WebhookClientKey string

	bins    Binaries
	opts    ControlPlaneOptions
	janitor *Janitor
	pki     *pki
	etcd    *Process
	api     *Process
	apiArgs []string
}

// StartControlPlane starts etcd and kube-apiserver in a new directory under the
// janitor's root and waits until the API server is ready. The janitor stops both at
// Cleanup; Stop stops them earlier.
func StartControlPlane(ctx context.Context, bins Binaries, j *Janitor) (*ControlPlane, error) {
	return StartControlPlaneWithOptions(ctx, bins, j, ControlPlaneOptions{})
}

// ControlPlaneOptions are optional settings of a control plane.
type ControlPlaneOptions struct {
	// AuditPolicy and AuditLog, both set, make the API server write an audit log
	// (JSON lines, one event per request and stage the policy selects) to AuditLog.
	AuditPolicy []byte
	AuditLog    string
}

// StartControlPlaneWithOptions is StartControlPlane with options.
func StartControlPlaneWithOptions(ctx context.Context, bins Binaries, j *Janitor, opts ControlPlaneOptions) (*ControlPlane, error) {
	dir, err := j.TempDir("controlplane-")
	if err != nil {
		return nil, err
	}
	p, err := newPKI(dir)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: dir, bins: bins, janitor: j, pki: p, opts: opts}
	// A port picked free may be taken before the process binds it: try again with
	// new ports.
	for attempt := 1; ; attempt++ {
		err = cp.start(ctx)
		if err == nil {
			return cp, nil
		}
		cp.Stop()
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
}

// start starts etcd and the API server on newly picked ports.
func (cp *ControlPlane) start(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(cp.Dir, "etcd")); err != nil { // from a failed attempt
		return err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcdArgs := []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + etcdClient, "--advertise-client-urls=" + etcdClient,
		"--listen-peer-urls=" + etcdPeer, "--initial-advertise-peer-urls=" + etcdPeer,
		"--initial-cluster=e2e=" + etcdPeer,
		"--unsafe-no-fsync", // test data: no need to survive a power cut
		"--log-level=warn",
	}
	cp.etcd, err = StartProcess("etcd", cp.bins.Etcd, etcdArgs, withoutEnv("ETCD_"), filepath.Join(cp.Dir, "etcd.log"))
	if err != nil {
		return err
	}
	cp.janitor.Track(cp.etcd)
	if err := waitHTTP(ctx, cp.etcd, etcdClient+"/health", http.DefaultClient); err != nil {
		return err
	}

	cp.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	admissionConfig, err := cp.writeAdmissionConfig()
	if err != nil {
		return err
	}
	cp.apiArgs = []string{
		"--etcd-servers=" + etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[2]),
		"--tls-cert-file=" + cp.pki.servingCert, "--tls-private-key-file=" + cp.pki.servingKey,
		"--client-ca-file=" + cp.pki.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + cp.pki.saPub,
		"--service-account-signing-key-file=" + cp.pki.saKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		// No controller creates the default ServiceAccount of a namespace, and the
		// ServiceAccount plugin would refuse every Pod without it.
		"--disable-admission-plugins=ServiceAccount",
		// Nothing reconciles the kubernetes Service's endpoints to a single loopback
		// address usefully; no lease churn either.
		"--endpoint-reconciler-type=none",
		// On SIGTERM, end open watches (within 2 s) instead of holding their
		// connections until the 60 s shutdown timeout, as a restarting API server
		// behind a load balancer does.
		"--shutdown-watch-termination-grace-period=2s",
		"--profiling=false",
		// The client certificate the API server presents to admission webhooks
		// that ask for one (a webhook that does not ask never sees it).
		"--admission-control-config-file=" + admissionConfig,
	}
	if cp.opts.AuditLog != "" && len(cp.opts.AuditPolicy) > 0 {
		policy := filepath.Join(cp.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, cp.opts.AuditPolicy, 0o600); err != nil {
			return err
		}
		cp.apiArgs = append(cp.apiArgs, "--audit-policy-file="+policy, "--audit-log-path="+cp.opts.AuditLog,
			"--audit-log-format=json", "--audit-log-mode=blocking", "--audit-log-maxsize=0")
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		return err
	}
	return cp.writeKubeconfig()
}

// writeAdmissionConfig writes the API server's AdmissionConfiguration: both webhook
// admission plugins read a kubeconfig whose user "*" (every webhook host) is the
// webhook client certificate. It returns the file's absolute path.
func (cp *ControlPlane) writeAdmissionConfig() (string, error) {
	dir, err := filepath.Abs(cp.Dir)
	if err != nil {
		return "", err
	}
	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.AuthInfos["*"] = &clientcmdapi.AuthInfo{ClientCertificate: cp.pki.webhookClientCert, ClientKey: cp.pki.webhookClientKey}
	kubeconfigPath := filepath.Join(dir, "webhook-client.kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfig, kubeconfigPath); err != nil {
		return "", err
	}
	plugin := func(name string) string {
		return fmt.Sprintf("  - name: %s\n    configuration:\n      apiVersion: apiserver.config.k8s.io/v1\n      kind: WebhookAdmissionConfiguration\n      kubeConfigFile: %q\n", name, kubeconfigPath)
	}
	config := "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n" +
		plugin("ValidatingAdmissionWebhook") + plugin("MutatingAdmissionWebhook")
	path := filepath.Join(dir, "admission-config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return "", err
	}
	cp.WebhookClientCA, cp.WebhookClientCert, cp.WebhookClientKey = cp.pki.webhookClientCA, cp.pki.webhookClientCert, cp.pki.webhookClientKey
	return path, nil
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer: same port, same
// etcd, same keys) and waits until /readyz answers 200.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	if cp.api != nil {
		select {
		case <-cp.api.Done():
		default:
			return errors.New("kube-apiserver is already running")
		}
	}
	var err error
	cp.api, err = StartProcess("kube-apiserver", cp.bins.KubeAPIServer, cp.apiArgs, os.Environ(),
		filepath.Join(cp.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	cp.janitor.Track(cp.api)
	client, err := cp.adminHTTPClient()
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	return waitHTTP(ctx, cp.api, cp.URL+"/readyz", client)
}

// StopAPIServer stops kube-apiserver gracefully (SIGTERM); etcd keeps running.
func (cp *ControlPlane) StopAPIServer() error {
	if cp.api == nil {
		return nil
	}
	return cp.api.Stop(stopGrace)
}

// KillAPIServer kills kube-apiserver (SIGKILL, a crash); etcd keeps running.
func (cp *ControlPlane) KillAPIServer() {
	if cp.api != nil {
		cp.api.Kill()
	}
}

// APIServerLogTail returns the last n lines of kube-apiserver's log.
func (cp *ControlPlane) APIServerLogTail(n int) string {
	if cp.api == nil {
		return ""
	}
	return cp.api.Tail(n)
}

// Stop stops the API server, then etcd. The janitor removes the directory.
func (cp *ControlPlane) Stop() {
	if cp.api != nil {
		_ = cp.api.Stop(stopGrace)
	}
	if cp.etcd != nil {
		_ = cp.etcd.Stop(stopGrace)
	}
}

// adminHTTPClient is an HTTP client that trusts the CA and presents the admin
// certificate.
func (cp *ControlPlane) adminHTTPClient() (*http.Client, error) {
	cfg := cp.adminConfig()
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt, Timeout: 5 * time.Second}, nil
}

// adminConfig is the admin's rest.Config.
func (cp *ControlPlane) adminConfig() *rest.Config {
	return &rest.Config{
		Host: cp.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: cp.pki.caCert, CertFile: cp.pki.adminCert, KeyFile: cp.pki.adminKey,
		},
		QPS: 100, Burst: 200,
	}
}

// writeKubeconfig writes the admin kubeconfig and checks that it works.
func (cp *ControlPlane) writeKubeconfig() error {
	cp.Kubeconfig = filepath.Join(cp.Dir, "admin.kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthority: cp.pki.caCert}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: cp.pki.adminCert, ClientKey: cp.pki.adminKey}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "e2e"
	if err := clientcmd.WriteToFile(*cfg, cp.Kubeconfig); err != nil {
		return err
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = 100, 200
	cp.Config = restCfg
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("admin kubeconfig %s: %w", cp.Kubeconfig, err)
	}
	return nil
}

// waitHTTP polls url until it answers 200, the process exits, or readyTimeout passes.
func waitHTTP(ctx context.Context, p *Process, url string, client *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body[:n])
		} else {
			last = err.Error()
		}
		select {
		case <-p.Done():
			return p.exitedError()
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within %s (last answer: %s); last log lines:\n%s",
				p.Name, url, readyTimeout, last, p.Tail(40))
		case <-time.After(100 * time.Millisecond): // polling interval
		}
	}
}

// withoutEnv is the test's environment without the variables starting with prefix
// (etcd reads its flags from ETCD_* variables too).
func withoutEnv(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
