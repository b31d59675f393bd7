package kindtest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Resource figures of issue 15 item 4: benchmarks, run once each by e2e/kind/run.sh
// (-bench . -benchtime 1x) and reported with b.ReportMetric, never asserted. They read
// the kubelet's own accounting (the Summary API through the API server's node proxy:
// the container's cgroup as cAdvisor sees it), so they measure the sidecar as it runs
// in a pod, not a process on this machine.

// containerStats is the part of the kubelet's Summary API (stats/summary) the figures
// use, for one container.
type containerStats struct {
	Name string `json:"name"`
	CPU  *struct {
		Time                 metav1.Time `json:"time"`
		UsageCoreNanoSeconds *uint64     `json:"usageCoreNanoSeconds"`
	} `json:"cpu"`
	Memory *struct {
		Time            metav1.Time `json:"time"`
		WorkingSetBytes *uint64     `json:"workingSetBytes"`
		RSSBytes        *uint64     `json:"rssBytes"`
	} `json:"memory"`
}

// summary is the kubelet's Summary API answer, pods only.
type summary struct {
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		Containers []containerStats `json:"containers"`
	} `json:"pods"`
}

// containerStats returns the kubelet's latest stats of container name in pod ns/pod.
func (e *env) containerStats(ctx context.Context, ns, pod, name string) (containerStats, error) {
	raw, err := e.Cluster.Kube.CoreV1().RESTClient().Get().Resource("nodes").Name(e.Node).
		SubResource("proxy").Suffix("stats/summary").DoRaw(ctx)
	if err != nil {
		return containerStats{}, fmt.Errorf("the kubelet's stats/summary of node %s: %w", e.Node, err)
	}
	var s summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return containerStats{}, fmt.Errorf("the kubelet's stats/summary: %w", err)
	}
	for _, p := range s.Pods {
		if p.PodRef.Namespace != ns || p.PodRef.Name != pod {
			continue
		}
		for _, c := range p.Containers {
			if c.Name == name && c.CPU != nil && c.CPU.UsageCoreNanoSeconds != nil && c.Memory != nil && c.Memory.WorkingSetBytes != nil {
				return c, nil
			}
		}
		return containerStats{}, fmt.Errorf("no CPU and memory stats of container %s in pod %s/%s yet", name, ns, pod)
	}
	return containerStats{}, fmt.Errorf("no stats of pod %s/%s yet", ns, pod)
}

// usage is what a container used over a window of the kubelet's samples.
type usage struct {
	Cores  float64 // CPU, in cores (CPU seconds per second)
	RSS    uint64  // bytes, at the end of the window (anonymous memory of the cgroup)
	WS     uint64  // working set bytes, at the end of the window
	Window time.Duration
}

// measureContainer samples container name of pod ns/pod at the start and after at
// least window (the kubelet refreshes its stats every 10-15 s), and returns the CPU
// used between the two samples' own timestamps and the memory at the second.
func (e *env) measureContainer(t testing.TB, ns, pod, name string, window time.Duration) usage {
	t.Helper()
	var first, last containerStats
	waitFor(t, "the kubelet's stats of "+ns+"/"+pod+"["+name+"]", podTimeout, func() (bool, error) {
		var err error
		first, err = e.containerStats(t.Context(), ns, pod, name)
		return err == nil, err
	})
	time.Sleep(window)
	waitFor(t, "a later sample of "+ns+"/"+pod+"["+name+"]", podTimeout, func() (bool, error) {
		var err error
		last, err = e.containerStats(t.Context(), ns, pod, name)
		if err != nil {
			return false, err
		}
		return last.CPU.Time.Sub(first.CPU.Time.Time) >= window, fmt.Errorf("samples %s apart", last.CPU.Time.Sub(first.CPU.Time.Time))
	})
	d := last.CPU.Time.Sub(first.CPU.Time.Time)
	u := usage{
		Cores:  float64(*last.CPU.UsageCoreNanoSeconds-*first.CPU.UsageCoreNanoSeconds) / float64(d.Nanoseconds()),
		WS:     *last.Memory.WorkingSetBytes,
		Window: d,
	}
	if last.Memory.RSSBytes != nil {
		u.RSS = *last.Memory.RSSBytes
	}
	return u
}

const mib = 1 << 20

// procMemory is the memory of a container's main process as /proc/<pid>/status tells
// it (the figures of docs/performance.md are these): VmRSS, split into anonymous and
// file pages. The cgroup's rss counts anonymous pages only, and the binary's pages are
// charged to whichever container read them first (the operator, same image).
type procMemory struct{ VMRSS, RssAnon, RssFile uint64 }

// procMemory reads /proc/<pid>/status of the container's task in the node.
func (e *env) procMemory(ctx context.Context, containerID string) (procMemory, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	tasks, err := e.nodeExec(ctx, "ctr", "--namespace", "k8s.io", "tasks", "ls")
	if err != nil {
		return procMemory{}, err
	}
	pid := ""
	for line := range strings.Lines(tasks) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			pid = f[1]
		}
	}
	if pid == "" {
		return procMemory{}, fmt.Errorf("no task %s in the node's containerd", id)
	}
	status, err := e.nodeExec(ctx, "cat", "/proc/"+pid+"/status")
	if err != nil {
		return procMemory{}, err
	}
	var m procMemory
	for line := range strings.Lines(status) {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return procMemory{}, fmt.Errorf("/proc/%s/status: %q: %w", pid, line, err)
		}
		switch f[0] {
		case "VmRSS:":
			m.VMRSS = kb << 10
		case "RssAnon:":
			m.RssAnon = kb << 10
		case "RssFile:":
			m.RssFile = kb << 10
		}
	}
	if m.VMRSS == 0 {
		return procMemory{}, fmt.Errorf("/proc/%s/status has no VmRSS", pid)
	}
	return m, nil
}

// BenchmarkSidecarResources: the injected sidecar's memory and CPU in a running pod
// (kubernetes provider), idle (an rpc app evaluating once a second), and under 1,000
// evaluations/s from an rpc app with the provider's cache off (with its default LRU
// cache the rpc provider answers from memory and the sidecar sees none of them) and
// from an OFREP app; the app's own figures beside them.
func BenchmarkSidecarResources(b *testing.B) {
	e := kind(b)
	ns := e.namespace(b, "figures-res")
	e.createFlags(b, ns, "red")
	e.createSource(b, ns, nil, flagsSource())
	const window = 30 * time.Second
	for b.Loop() {
		for _, load := range []struct {
			name string
			env  []corev1.EnvVar
		}{
			{"idle", envs("PROVIDER", "flagd", "INTERVAL_MS", "1000")},
			{"rpc-1000", envs("PROVIDER", "flagd", "FLAGD_CACHE", "disabled", "INTERVAL_MS", "1000", "RATE", "1000")},
			{"ofrep-1000", envs("PROVIDER", "ofrep", "OFREP_URL", "http://localhost:8016", "INTERVAL_MS", "1000", "RATE", "1000")},
		} {
			name := "app-" + load.name
			pod := e.deployApp(b, ns, name, appOptions{Annotations: injected(), Env: append(envs("FLAG_KEY", "color"), load.env...)})
			e.checkSidecarRunning(b, pod)
			e.waitValue(b, ns, pod.Name, "red", valueTimeout)
			time.Sleep(10 * time.Second) // past start-up and the first connections
			before, err := e.status(b.Context(), ns, pod.Name)
			if err != nil {
				b.Fatal(err)
			}
			side := e.measureContainer(b, ns, pod.Name, sidecarName, window)
			after, err := e.status(b.Context(), ns, pod.Name)
			if err != nil {
				b.Fatal(err)
			}
			app, err := e.containerStats(b.Context(), ns, pod.Name, "app")
			if err != nil {
				b.Fatal(err)
			}
			st, _ := sidecarStatus(pod)
			proc, err := e.procMemory(b.Context(), st.ContainerID)
			if err != nil {
				b.Fatal(err)
			}
			rate := float64(after.Evaluations-before.Evaluations) / (time.Duration(after.Now-before.Now) * time.Millisecond).Seconds()
			b.Logf("FIGURE sidecar %s: VmRSS %.1f MiB (anonymous %.1f, file %.1f), cgroup working set %.1f MiB, CPU %.1f%% of a core over %s; the app evaluated %.0f/s (%d errors), its working set %.1f MiB",
				load.name, float64(proc.VMRSS)/mib, float64(proc.RssAnon)/mib, float64(proc.RssFile)/mib, float64(side.WS)/mib,
				side.Cores*100, side.Window.Round(time.Second), rate, after.Errors-before.Errors, float64(*app.Memory.WorkingSetBytes)/mib)
			b.ReportMetric(float64(proc.VMRSS)/mib, load.name+"-VmRSS-MiB")
			b.ReportMetric(float64(proc.RssAnon)/mib, load.name+"-RssAnon-MiB")
			b.ReportMetric(side.Cores*1000, load.name+"-CPU-millicores")
			b.ReportMetric(rate, load.name+"-evals/s")
			if err := e.Cluster.Kube.AppsV1().Deployments(ns).Delete(b.Context(), name, metav1.DeleteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkPodStart: the time from creating a one-replica Deployment to its pod being
// Ready, without and with injection (the sidecar's cost to a rollout), and with
// injection to the app's first evaluation that returned the flag. Rounds alternate
// the two so that a busy moment of the shared machine hits both.
func BenchmarkPodStart(b *testing.B) {
	e := kind(b)
	ns := e.namespace(b, "figures-start")
	e.createFlags(b, ns, "red")
	e.createSource(b, ns, nil, flagsSource())
	const rounds = 5
	var plain, injectedReady, firstValue []time.Duration
	probe := "the sidecar has no readiness probe"
	for b.Loop() {
		for i := range rounds {
			for _, inject := range []bool{false, true} {
				o := appOptions{Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")}
				name := fmt.Sprintf("plain-%d", i)
				if inject {
					o.Annotations = injected()
					name = fmt.Sprintf("injected-%d", i)
				}
				start := time.Now()
				pod := e.deployApp(b, ns, name, o)
				ready := time.Since(start)
				if !inject {
					plain = append(plain, ready)
				} else {
					injectedReady = append(injectedReady, ready)
					if rp := e.sidecar(b, pod).ReadinessProbe; rp != nil && i == 0 {
						probe = fmt.Sprintf("the sidecar's readiness probe: initialDelaySeconds %d, periodSeconds %d", rp.InitialDelaySeconds, rp.PeriodSeconds)
					}
					s := e.waitValue(b, ns, pod.Name, "red", valueTimeout)
					seen, _ := s.firstSeen("red")
					firstValue = append(firstValue, time.UnixMilli(seen).Sub(start))
				}
				if err := e.Cluster.Kube.AppsV1().Deployments(ns).Delete(b.Context(), name, metav1.DeleteOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	med := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return percentile(d, 50)
	}
	b.Logf("FIGURE pod start (Deployment created → pod Ready, median of %d, polled every 100 ms): without injection %s %v; with injection %s %v; with injection → first flag value %s %v (%s)",
		rounds, med(plain), plain, med(injectedReady), injectedReady, med(firstValue), firstValue, probe)
	b.ReportMetric(float64(med(plain).Milliseconds()), "plain-ready-ms")
	b.ReportMetric(float64(med(injectedReady).Milliseconds()), "injected-ready-ms")
	b.ReportMetric(float64(med(firstValue).Milliseconds()), "injected-first-value-ms")
}
