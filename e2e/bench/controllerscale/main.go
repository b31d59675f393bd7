// Command controllerscale measures the controllers at scale (issue 12, item 9) on
// the e2e harness's local kube-apiserver + etcd: it creates -flags FeatureFlags and
// -flagds Flagds (each with its FeatureFlagSource) in -namespaces namespaces, starts
// `flagpole controller`, and reports the time until every Flagd is reconciled
// (Deployment applied, status observed) from a cold start, the operator's RSS, the
// API requests it made (from its flagpole_kube_requests_total), the writes it makes
// in a steady state (target: zero), and the cost of a restart with everything in
// place (a full re-list: the resync). A benchmark, not a test.
//
//	cd e2e && go run ./bench/controllerscale [-flags 1000] [-flagds 200]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
)

func main() {
	flags := flag.Int("flags", 1000, "FeatureFlags")
	flagds := flag.Int("flagds", 200, "Flagds (each with its FeatureFlagSource naming one FeatureFlag)")
	namespaces := flag.Int("namespaces", 20, "namespaces to spread them over")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *flags, *flagds, *namespaces)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "controllerscale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, nFlags, nFlagds, nNS int) error {
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
	start := time.Now()
	if err := populate(ctx, c, nFlags, nFlagds, nNS); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "created %d FeatureFlags, %d FeatureFlagSources and %d Flagds in %d namespaces in %s\n",
		nFlags, nFlagds, nFlagds, nNS, time.Since(start).Round(time.Millisecond))

	cold, err := reconcileAll(ctx, s, c, nFlagds, nNS, "cold")
	if err != nil {
		return err
	}
	warm, err := reconcileAll(ctx, s, c, nFlagds, nNS, "restart")
	if err != nil {
		return err
	}
	fmt.Printf("### Controller scale, %s\n\n%d FeatureFlags, %d Flagds (each with a FeatureFlagSource naming one FeatureFlag), %d namespaces; `flagpole controller` against a local kube-apiserver + etcd (no kube-controller-manager: Deployments get no pods).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), nFlags, nFlagds, nNS)
	fmt.Println("| run | every Flagd reconciled after | RSS then | requests (reads / writes) until then | writes in the next " + steadyPeriod.String() + " |")
	fmt.Println("|---|---:|---:|---|---:|")
	for _, r := range []*result{cold, warm} {
		fmt.Printf("| %s | %s | %.1f MiB | %d / %d | %d |\n", r.name, r.took.Round(time.Millisecond), float64(r.rss)/(1<<20), r.reads, r.writes, r.steadyWrites)
	}
	fmt.Println("\nWrites by resource on the cold start:")
	fmt.Println()
	for _, line := range cold.byResource {
		fmt.Println("- " + line)
	}
	return nil
}

// populate creates the objects, 16 at a time.
func populate(ctx context.Context, c *harness.Cluster, nFlags, nFlagds, nNS int) error {
	for i := range nNS {
		ns := fmt.Sprintf("scale-%02d", i)
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	jobs := make(chan func() error, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range 16 {
		wg.Go(func() {
			for job := range jobs {
				if err := job(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range nFlags {
		ns, name := fmt.Sprintf("scale-%02d", i%nNS), fmt.Sprintf("flag-%04d", i)
		jobs <- func() error {
			ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{
				Flags: map[string]v1beta1.Flag{"f": {State: "ENABLED", Variants: []byte(`{"on":true,"off":false}`), DefaultVariant: "on"}}}}}
			_, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Create(ctx, ff, metav1.CreateOptions{})
			return err
		}
	}
	for i := range nFlagds {
		ns, name, flagName := fmt.Sprintf("scale-%02d", i%nNS), fmt.Sprintf("flagd-%03d", i), fmt.Sprintf("flag-%04d", i)
		jobs <- func() error {
			ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FeatureFlagSourceSpec{
				Sources: []v1beta1.Source{{Source: flagName, Provider: "kubernetes"}}}}
			if _, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
				return err
			}
			f := &v1beta1.Flagd{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FlagdSpec{FeatureFlagSource: name}}
			_, err := c.Flags.CoreV1beta1().Flagds(ns).Create(ctx, f, metav1.CreateOptions{})
			return err
		}
	}
	close(jobs)
	wg.Wait()
	return errors.Join(errs...)
}

type result struct {
	name                        string
	took                        time.Duration
	rss                         int64
	reads, writes, steadyWrites int
	byResource                  []string
}

// reconcileAll starts a controller, waits until every Flagd's status has observed
// its generation, counts its requests until then and over a steady period, and
// stops it.
func reconcileAll(ctx context.Context, s *harness.Suite, c *harness.Cluster, nFlagds, nNS int, name string) (*result, error) {
	dir, err := s.Janitor.TempDir("controllerscale-")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	p, addrs, err := harness.StartFlagpole(ctx, s.Janitor, s.Flagpole, dir, nil, []string{"management"},
		"controller", "--kubeconfig", c.ControlPlane.Kubeconfig, "--health-probe-bind-address", "127.0.0.1:0",
		"--sidecar-image", "flagpole:scale", "--leader-elect=false", "--kube-api-qps", "200", "--kube-api-burst", "400")
	if err != nil {
		return nil, err
	}
	defer func() { _ = p.Stop(30 * time.Second) }()
	r := &result{name: name}
	for {
		done := 0
		for i := range nNS {
			list, err := c.Flags.CoreV1beta1().Flagds(fmt.Sprintf("scale-%02d", i)).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, err
			}
			for _, f := range list.Items {
				if f.Status.ObservedGeneration == f.Generation && f.Status.Address != "" {
					done++
				}
			}
		}
		if done == nFlagds {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return nil, fmt.Errorf("%s: only %d of %d Flagds reconciled after 10 minutes; log:\n%s", name, done, nFlagds, p.Tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.took = time.Since(start)
	r.rss, _ = rssOf(p.Pid())
	counts, err := requestCounts(addrs["management"])
	if err != nil {
		return nil, err
	}
	r.reads, r.writes, r.byResource = totals(counts)
	time.Sleep(steadyPeriod)
	after, err := requestCounts(addrs["management"])
	if err != nil {
		return nil, err
	}
	_, w2, _ := totals(after)
	r.steadyWrites = w2 - r.writes
	fmt.Fprintf(os.Stderr, "%s: every Flagd reconciled after %s; %d reads, %d writes; %d writes in the next %s\n",
		name, r.took.Round(time.Millisecond), r.reads, r.writes, r.steadyWrites, steadyPeriod)
	return r, nil
}

// steadyPeriod is how long the steady state is watched for writes.
const steadyPeriod = 30 * time.Second

// requestCounts scrapes flagpole_kube_requests_total by "verb resource".
func requestCounts(mgmt string) (map[string]int, error) {
	resp, err := http.Get("http://" + mgmt + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flagpole_kube_requests_total{") {
			continue
		}
		labels, value, _ := strings.Cut(strings.TrimPrefix(line, "flagpole_kube_requests_total{"), "} ")
		var verb, resource string
		for kv := range strings.SplitSeq(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "verb":
				verb = v
			case "resource":
				resource = v
			}
		}
		n, _ := strconv.ParseFloat(value, 64)
		out[verb+" "+resource] += int(n)
	}
	return out, sc.Err()
}

// totals splits request counts into reads (GET, WATCH) and writes, and lists the
// writes by resource.
func totals(counts map[string]int) (reads, writes int, byResource []string) {
	for k, n := range counts {
		verb, _, _ := strings.Cut(k, " ")
		if verb == "GET" || verb == "WATCH" {
			reads += n
			continue
		}
		writes += n
		byResource = append(byResource, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(byResource)
	return reads, writes, byResource
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
