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
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

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
	name       string
	clients    int
	latencies  []time.Duration
	elapsed    time.Duration
	injectedOK bool
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

	var results []result
	for _, registered := range []bool{false, true} {
		for _, clients := range []int{1, 16} {
			ns, err := prepare(ctx, c, kube)
			if err != nil {
				return err
			}
			name := "no webhook"
			if registered {
				name = "webhook"
				unregister, err := hook.Register(ctx, c, "flagpole-admissionload-"+ns, ns)
				if err != nil {
					return err
				}
				defer unregister()
				// warm the grant: the first pod of a ServiceAccount writes its Role
				if _, err := create(ctx, kube, ns, "warm", 0); err != nil {
					return err
				}
			}
			r, err := measure(ctx, kube, ns, name, clients, pods)
			if err != nil {
				return err
			}
			r.injectedOK, err = injected(ctx, kube, ns, registered)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "%s, %d clients: p50 %s p99 %s, %.0f pods/s\n", name, clients, ms(r.quantile(0.5)), ms(r.quantile(0.99)), r.perSecond())
			results = append(results, r)
		}
	}
	curve, err := rssCurve(ctx, c, kube, hook, rssPods)
	if err != nil {
		return err
	}
	report(results, curve, pods)
	return nil
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

// create creates pod i of namespace ns and returns how long the create took.
func create(ctx context.Context, kube kubernetes.Interface, ns, prefix string, i int) (time.Duration, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: prefix + "-" + strconv.Itoa(i),
			Annotations:     map[string]string{webhook.AnnotationEnabled: "true", webhook.AnnotationFeatureFlagSource: "flags"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: types.UID("00000000-0000-0000-0000-000000000001")}}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
	start := time.Now()
	_, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	return time.Since(start), err
}

// measure creates n pods with clients concurrent clients.
func measure(ctx context.Context, kube kubernetes.Interface, ns, name string, clients, n int) (result, error) {
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
				d, err := create(ctx, kube, ns, "pod", i)
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

// injected checks one created pod: it carries the sidecar exactly when the webhook
// is registered.
func injected(ctx context.Context, kube kubernetes.Interface, ns string, want bool) (bool, error) {
	pod, err := kube.CoreV1().Pods(ns).Get(ctx, "pod-0", metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	got := len(pod.Spec.InitContainers) == 1 && pod.Spec.InitContainers[0].Name == "flagd"
	if got != want {
		return false, fmt.Errorf("namespace %s: pod-0 injected = %v, want %v", ns, got, want)
	}
	return true, nil
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
					if _, err := create(ctx, kube, ns, "rss", i); err != nil {
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

// report prints the Markdown table and the budget verdicts: p99 ≤ baseline + 5 ms and
// ≥ 90% of the baseline pods/s, per concurrency.
func report(results []result, curve []rssPoint, pods int) {
	fmt.Printf("### Admission load, %s\n\n%d pod creates per row (annotated, kubernetes source, one ServiceAccount), local kube-apiserver + etcd, webhook by URL on loopback.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), pods)
	fmt.Println("| setup | clients | p50 | p99 | pods/s |")
	fmt.Println("|---|---:|---:|---:|---:|")
	base := map[int]result{}
	for _, r := range results {
		if r.name == "no webhook" {
			base[r.clients] = r
		}
		fmt.Printf("| %s | %d | %s | %s | %.0f |\n", r.name, r.clients, ms(r.quantile(0.5)), ms(r.quantile(0.99)), r.perSecond())
	}
	fmt.Println("\n| budget | clients | target | measured | |\n|---|---:|---|---|---|")
	for _, r := range results {
		b, ok := base[r.clients]
		if r.name != "webhook" || !ok {
			continue
		}
		p99Budget := b.quantile(0.99) + 5*time.Millisecond
		fmt.Printf("| p99 ≤ baseline + 5 ms | %d | ≤ %s | %s | %s |\n", r.clients, ms(p99Budget), ms(r.quantile(0.99)), verdict(r.quantile(0.99) <= p99Budget))
		fmt.Printf("| pods/s ≥ 90%% of baseline | %d | ≥ %.0f | %.0f (%.0f%%) | %s |\n", r.clients, 0.9*b.perSecond(), r.perSecond(),
			100*r.perSecond()/b.perSecond(), verdict(r.perSecond() >= 0.9*b.perSecond()))
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
