// Command admissionload measures what the pod webhook costs the API server (issue
// 11, item 11): on the e2e harness's local kube-apiserver + etcd, it creates pods
// (annotated for sidecar injection with a kubernetes source, all with the same
// ServiceAccount, as a Deployment's pods are) with 1 and with 16 concurrent
// clients, without and with the webhook registered, and reports p50/p99 latency of
// a pod create and pods/s; then it creates pods up to -rss-pods in batches and
// reports the webhook's RSS along the way (it keeps no pod cache, so it must stay
// flat). It is a benchmark, not a test: it prints figures and the budget verdicts
// and fails only on errors.
//
//	cd e2e && go run ./bench/admissionload [-pods 200] [-rss-pods 3000]
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/webhook"
)

func main() {
	pods := flag.Int("pods", 200, "pod creates per measurement")
	rssPods := flag.Int("rss-pods", 3000, "pods created in all for the webhook's RSS curve")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *pods, *rssPods)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "admissionload:", err)
		os.Exit(1)
	}
}

// result is one measurement.
type result struct {
	name      string
	clients   int
	latencies []time.Duration
	elapsed   time.Duration
}

func (r result) quantile(q float64) time.Duration {
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func (r result) perSecond() float64 { return float64(len(r.latencies)) / r.elapsed.Seconds() }

func run(ctx context.Context, pods, rssPods int) error {
	j, err := harness.NewJanitor()
	if err != nil {
		return err
	}
	defer j.Cleanup()
	defer j.CleanupOnSignal()()
	s, err := harness.Setup(ctx, j, harness.Options{RepoRoot: "..", ToolsDir: "tools", Log: os.Stderr})
	if err != nil {
		return err
	}
	c := s.Cluster
	cfg := *c.Config
	cfg.QPS, cfg.Burst = 5000, 5000 // measure the API server, not the client's rate limiter
	kube, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		return err
	}
	dir, err := j.TempDir("admissionload-")
	if err != nil {
		return err
	}
	hook, err := s.StartWebhookProcess(ctx, c, dir, "--sidecar-image", "flagpole:bench")
	if err != nil {
		return err
	}
	defer func() { _ = hook.Stop() }()

	noop, stopNoop, err := noopWebhook(dir)
	if err != nil {
		return err
	}
	defer stopNoop()

	results, err := measureSetups(ctx, c, kube, hook, noop, pods)
	if err != nil {
		return err
	}
	handler, err := handlerMean(hook)
	if err != nil {
		return err
	}
	curve, err := rssCurve(ctx, c, kube, hook, rssPods)
	if err != nil {
		return err
	}
	report(results, curve, pods, handler)
	return nil
}

// measureSetups measures pod creates in each setup with 1 and 16 clients.
func measureSetups(ctx context.Context, c *harness.Cluster, kube kubernetes.Interface, hook, noop *harness.Webhook, pods int) ([]result, error) {
	// The setups: the baseline; a webhook that only answers "allowed" (the floor: what
	// any mutating webhook call costs this API server); flagpole's webhook; and the
	// pod flagpole's webhook produces, created without a webhook (what the larger
	// pod alone costs).
	var results []result
	var injectedPod *corev1.Pod
	for _, setup := range []string{setupBaseline, setupNoop, setupWebhook, setupInjectedSpec} {
		for _, clients := range []int{1, 16} {
			ns, err := prepare(ctx, c, kube)
			if err != nil {
				return nil, err
			}
			template := annotatedPod()
			switch setup {
			case setupNoop, setupWebhook:
				w := hook
				if setup == setupNoop {
					w = noop
				}
				unregister, err := w.Register(ctx, c, "flagpole-admissionload-"+ns, ns)
				if err != nil {
					return nil, err
				}
				defer unregister()
				// warm the connection and, for flagpole's, the grant: the first pod of
				// a ServiceAccount writes its Role
				if _, err := create(ctx, kube, ns, template, "warm", 0); err != nil {
					return nil, err
				}
			case setupInjectedSpec:
				template = injectedPod
			}
			r, err := measure(ctx, kube, ns, template, setup, clients, pods)
			if err != nil {
				return nil, err
			}
			pod, err := kube.CoreV1().Pods(ns).Get(ctx, "pod-0", metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			if got, want := hasSidecar(pod), setup == setupWebhook || setup == setupInjectedSpec; got != want {
				return nil, fmt.Errorf("%s: pod-0 has the sidecar = %v, want %v", setup, got, want)
			}
			if setup == setupWebhook {
				injectedPod = asTemplate(pod)
			}
			fmt.Fprintf(os.Stderr, "%s, %d clients: p50 %s p99 %s, %.0f pods/s\n", setup, clients, ms(r.quantile(0.5)), ms(r.quantile(0.99)), r.perSecond())
			results = append(results, r)
		}
	}
	return results, nil
}

// prepare creates a namespace with the ServiceAccount, the FeatureFlag and the
// FeatureFlagSource the pods name.
func prepare(ctx context.Context, c *harness.Cluster, kube kubernetes.Interface) (string, error) {
	ns := fmt.Sprintf("load-%d", time.Now().UnixNano()%1_000_000_000)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{
		Flags: map[string]v1beta1.Flag{"f": {State: "ENABLED", Variants: []byte(`{"on":true,"off":false}`), DefaultVariant: "on"}}}}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Create(ctx, ff, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "flags"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	return ns, nil
}

// The setups measured.
const (
	setupBaseline     = "no webhook"
	setupNoop         = "no-op webhook"
	setupWebhook      = "webhook"
	setupInjectedSpec = "injected pod, no webhook"
)

// annotatedPod is the pod the load creates: annotated for injection with a
// kubernetes source, owned by a (never created) ReplicaSet, one ServiceAccount.
func annotatedPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Annotations:     map[string]string{webhook.AnnotationEnabled: "true", webhook.AnnotationFeatureFlagSource: "flags"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: types.UID("00000000-0000-0000-0000-000000000001")}}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
}

// asTemplate is a created pod as a template for creating more like it: what the API
// server set (identity, status, defaults the next create sets again) removed.
func asTemplate(pod *corev1.Pod) *corev1.Pod {
	t := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: pod.Labels, Annotations: pod.Annotations, OwnerReferences: pod.OwnerReferences},
		Spec: *pod.Spec.DeepCopy()}
	return t
}

func hasSidecar(pod *corev1.Pod) bool {
	return len(pod.Spec.InitContainers) == 1 && pod.Spec.InitContainers[0].Name == "flagd"
}

// create creates pod i of namespace ns from template and returns how long the
// create took.
func create(ctx context.Context, kube kubernetes.Interface, ns string, template *corev1.Pod, prefix string, i int) (time.Duration, error) {
	pod := template.DeepCopy()
	pod.Name = prefix + "-" + strconv.Itoa(i)
	start := time.Now()
	_, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	return time.Since(start), err
}

// measure creates n pods with clients concurrent clients.
func measure(ctx context.Context, kube kubernetes.Interface, ns string, template *corev1.Pod, name string, clients, n int) (result, error) {
	r := result{name: name, clients: clients, latencies: make([]time.Duration, n)}
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for i := range next {
				d, err := create(ctx, kube, ns, template, "pod", i)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				r.latencies[i] = d
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r, errors.Join(errs...)
}

// rssPoint is the webhook's RSS after a number of pods.
type rssPoint struct {
	pods int
	rss  int64
}

// rssCurve creates pods in batches (16 clients) and reads the webhook's RSS after each.
func rssCurve(ctx context.Context, c *harness.Cluster, kube kubernetes.Interface, hook *harness.Webhook, total int) ([]rssPoint, error) {
	ns, err := prepare(ctx, c, kube)
	if err != nil {
		return nil, err
	}
	unregister, err := hook.Register(ctx, c, "flagpole-admissionload-rss-"+ns, ns)
	if err != nil {
		return nil, err
	}
	defer unregister()
	rss, err := rssOf(hook.Proc.Pid())
	if err != nil {
		return nil, err
	}
	curve := []rssPoint{{0, rss}}
	batch := max(total/6, 1)
	for done := 0; done < total; {
		n := min(batch, total-done)
		var wg sync.WaitGroup
		errc := make(chan error, n)
		next := make(chan int, n)
		for i := range n {
			next <- done + i
		}
		close(next)
		for range 16 {
			wg.Go(func() {
				for i := range next {
					if _, err := create(ctx, kube, ns, annotatedPod(), "rss", i); err != nil {
						errc <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		if err := <-errc; err != nil {
			return nil, err
		}
		done += n
		if rss, err = rssOf(hook.Proc.Pid()); err != nil {
			return nil, err
		}
		curve = append(curve, rssPoint{done, rss})
		fmt.Fprintf(os.Stderr, "%d pods: webhook RSS %.1f MiB\n", done, float64(rss)/(1<<20))
	}
	return curve, nil
}

// rssOf reads VmRSS of a process in bytes.
func rssOf(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// noopWebhook serves admission reviews by answering "allowed" and nothing else,
// over TLS on loopback as flagpole's webhook is served: the floor of what a
// mutating webhook costs the API server.
func noopWebhook(dir string) (*harness.Webhook, func(), error) {
	certDir := filepath.Join(dir, "noop-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, nil, err
	}
	ca, err := harness.ServingCert(certDir)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var review admissionv1.AdmissionReview
			if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
				http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
				return
			}
			review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
			review.Request = nil
			w.Header().Set("Content-Type", "application/json")
			if err := json.NewEncoder(w).Encode(review); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	return &harness.Webhook{Address: ln.Addr().String(), CABundle: ca}, func() { _ = srv.Close() }, nil
}

// handlerMean is the mean time flagpole's webhook took to answer a pod admission,
// from its flagpole_admission_duration_seconds histogram.
func handlerMean(hook *harness.Webhook) (time.Duration, error) {
	resp, err := http.Get("http://" + hook.Management + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum, count float64
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.Contains(line, `webhook="mutate-pods"`) {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "flagpole_admission_duration_seconds_sum"):
			sum += v
		case strings.HasPrefix(line, "flagpole_admission_duration_seconds_count"):
			count += v
		}
	}
	if count == 0 {
		return 0, errors.New("no pod admissions in the webhook's flagpole_admission_duration_seconds")
	}
	return time.Duration(sum / count * float64(time.Second)), nil
}

// report prints the Markdown table and the budget verdicts: p99 ≤ baseline + 5 ms and
// ≥ 90% of the baseline pods/s, per concurrency; and the same against the no-op
// webhook, the floor any webhook starts from.
func report(results []result, curve []rssPoint, pods int, handler time.Duration) {
	fmt.Printf("### Admission load, %s\n\n%d pod creates per row (annotated, kubernetes source, one ServiceAccount), local kube-apiserver + etcd, webhooks by URL on loopback (TLS).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), pods)
	fmt.Println("| setup | clients | p50 | p99 | pods/s |")
	fmt.Println("|---|---:|---:|---:|---:|")
	by := map[string]result{}
	for _, r := range results {
		by[r.name+"/"+strconv.Itoa(r.clients)] = r
		fmt.Printf("| %s | %d | %s | %s | %.0f |\n", r.name, r.clients, ms(r.quantile(0.5)), ms(r.quantile(0.99)), r.perSecond())
	}
	fmt.Printf("\nflagpole's pod webhook answered in %s on average (its own histogram).\n", ms(handler))
	fmt.Println("\n| budget | against | clients | target | measured | |\n|---|---|---:|---|---|---|")
	for _, against := range []string{setupBaseline, setupNoop} {
		for _, clients := range []int{1, 16} {
			r, okR := by[setupWebhook+"/"+strconv.Itoa(clients)]
			b, okB := by[against+"/"+strconv.Itoa(clients)]
			if !okR || !okB {
				continue
			}
			p99Budget := b.quantile(0.99) + 5*time.Millisecond
			fmt.Printf("| p99 ≤ +5 ms | %s | %d | ≤ %s | %s | %s |\n", against, clients, ms(p99Budget), ms(r.quantile(0.99)), verdict(r.quantile(0.99) <= p99Budget))
			fmt.Printf("| pods/s ≥ 90%% | %s | %d | ≥ %.0f | %.0f (%.0f%%) | %s |\n", against, clients, 0.9*b.perSecond(), r.perSecond(),
				100*r.perSecond()/b.perSecond(), verdict(r.perSecond() >= 0.9*b.perSecond()))
		}
	}
	fmt.Println("\nWebhook RSS while pods are created (no pod cache):\n\n| pods | RSS |\n|---:|---:|")
	for _, p := range curve {
		fmt.Printf("| %d | %.1f MiB |\n", p.pods, float64(p.rss)/(1<<20))
	}
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**missed**"
}
