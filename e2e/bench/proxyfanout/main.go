// Command proxyfanout measures the flagd-proxy's fan-out (issue 13, item 5) on the
// e2e harness's local kube-apiserver + etcd: -streams SyncFlags streams over
// -flags FeatureFlags (in -namespaces namespaces, each stream authenticated with a
// ServiceAccount token of its own, as pods' projected tokens are) on one
// `flagpole flagd-proxy start` running as its ServiceAccount with its ClusterRole.
// It reports the time to open every stream (TokenReviews and SubjectAccessReviews
// included), the proxy's RSS and heap, and for three kinds of updates the time from
// the FeatureFlag Update call to the last stream receiving it (p50/p99) and the
// proxy's CPU per update: one FeatureFlag at a time (its streams/flags streams),
// every FeatureFlag at once (the -streams-th stream), and one FeatureFlag followed
// by every stream. Last, the cost of the shared informer: the proxy's heap and RSS
// after -extra FeatureFlags no stream asks for are created. A benchmark, not a test.
//
//	cd e2e && go run ./bench/proxyfanout [-streams 1000] [-flags 100]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/generated/clientset/versioned"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/proxy"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	kubesource "github.com/flagpole-dev/flagpole/sync/kubernetes"
)

func main() {
	o := options{}
	flag.IntVar(&o.streams, "streams", 1000, "SyncFlags streams (each with a token of its own)")
	flag.IntVar(&o.flags, "flags", 100, "FeatureFlags the streams are spread over")
	flag.IntVar(&o.namespaces, "namespaces", 10, "namespaces the FeatureFlags are spread over (a ServiceAccount each, granted its namespace's flags)")
	flag.IntVar(&o.updates, "updates", 200, "updates of one FeatureFlag at a time")
	flag.IntVar(&o.bursts, "bursts", 20, "rounds updating every FeatureFlag at once")
	flag.IntVar(&o.hot, "hot-updates", 50, "updates of one FeatureFlag followed by every stream")
	flag.IntVar(&o.extra, "extra", 1000, "FeatureFlags no stream asks for, created first (the shared informer's cost)")
	flag.StringVar(&o.proxyEnv, "proxy-env", "", "environment of the proxy, space-separated (GODEBUG=gctrace=1, GOGC=50, ...)")
	flag.StringVar(&o.proxyLog, "proxy-log", "", "copy the proxy's log to this file at the end")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxyfanout:", err)
		os.Exit(1)
	}
}

type options struct {
	streams, flags, namespaces, updates, bursts, hot, extra int
	proxyEnv, proxyLog                                      string
}

// waitTimeout bounds every wait for messages (a broken run, not a measurement).
const waitTimeout = 2 * time.Minute

func run(ctx context.Context, o options) error {
	if o.flags%o.namespaces != 0 || o.streams%o.flags != 0 {
		return errors.New("-flags must be a multiple of -namespaces and -streams of -flags")
	}
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
	fast := rest.CopyConfig(c.Config)
	fast.QPS, fast.Burst = -1, 0 // no client-side rate limit
	flags, err := versioned.NewForConfig(fast)
	if err != nil {
		return err
	}
	b := &bench{o: o, c: c, track: &tracker{pending: map[int]*revision{}}, flags: flags, last: map[int]*v1beta1.FeatureFlag{}}
	if err := b.populate(ctx); err != nil {
		return err
	}
	dir, err := s.Janitor.TempDir("proxyfanout-")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.TokenKubeconfig(ctx, "fanout-ops", "flagd-proxy", kubeconfig); err != nil {
		return err
	}
	p, addrs, err := harness.StartFlagpole(ctx, s.Janitor, s.Flagpole, dir, strings.Fields(o.proxyEnv), []string{"sync", "management"},
		"flagd-proxy", "start", "--kubeconfig", kubeconfig, "--bind-address", "127.0.0.1", "--port", "0", "--management-port", "0")
	if err != nil {
		return err
	}
	defer func() {
		_ = p.Stop(30 * time.Second)
		if o.proxyLog != "" {
			if data, err := os.ReadFile(p.LogPath); err == nil {
				_ = os.WriteFile(o.proxyLog, data, 0o600)
			}
		}
	}()
	b.proxy, b.mgmt = addrs["sync"], addrs["management"]
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	idle, err := b.scrape()
	if err != nil {
		return err
	}
	// The shared informer's cost, measured first, on a quiet process.
	informer, err := b.informerCost(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%d FeatureFlags no stream asks for: heap %+.1f MiB, RSS %+.1f MiB\n", o.extra, float64(informer.heap)/(1<<20), float64(informer.rss)/(1<<20))

	// The alternative to the shared informer: one watch per followed FeatureFlag.
	watches, err := b.perFlagWatches(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "one watch per FeatureFlag: %d watches, heap %s, %d goroutines\n", o.flags, mib(watches.heap), watches.goroutines)

	// Every stream on its own connection, as every sidecar has.
	tokens, err := b.tokens(ctx)
	if err != nil {
		return err
	}
	before, _ := b.scrape()
	start := time.Now()
	spread := make([]int, o.streams)
	for i := range spread {
		spread[i] = i % o.flags
	}
	streams, err := b.open(ctx, tokens, spread)
	if err != nil {
		return err
	}
	connect := time.Since(start)
	time.Sleep(2 * time.Second) // settle before measuring memory
	afterConnect, err := b.scrape()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%d streams served in %s (%d TokenReviews, %d SubjectAccessReviews); RSS %s\n", o.streams, connect.Round(time.Millisecond),
		int(afterConnect.requests["POST tokenreviews"]-before.requests["POST tokenreviews"]),
		int(afterConnect.requests["POST subjectaccessreviews"]-before.requests["POST subjectaccessreviews"]), mib(afterConnect.rss))

	single, err := b.measure(ctx, "one FeatureFlag at a time", o.updates, func(u int) []int { return []int{u % o.flags} }, o.streams/o.flags)
	if err != nil {
		return err
	}
	all := make([]int, o.flags)
	for i := range all {
		all[i] = i
	}
	burst, err := b.measure(ctx, "every FeatureFlag at once", o.bursts, func(int) []int { return all }, o.streams)
	if err != nil {
		return err
	}
	b.close(streams)

	// One FeatureFlag followed by every stream (tokens of its namespace's account).
	hotTokens := make([]string, o.streams)
	hotSpread := make([]int, o.streams)
	for i := range hotTokens {
		hotTokens[i] = tokens[(i*o.namespaces)%len(tokens)] // tokens[k] belongs to namespace k % namespaces: namespace 0
	}
	hotStreams, err := b.open(ctx, hotTokens, hotSpread)
	if err != nil {
		return err
	}
	hot, err := b.measure(ctx, "one FeatureFlag, every stream", o.hot, func(int) []int { return []int{0} }, o.streams)
	if err != nil {
		return err
	}
	atHot, _ := b.scrape()
	b.close(hotStreams)

	fmt.Printf("### flagd-proxy fan-out, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Printf("`flagpole flagd-proxy start` (defaults: caller authentication on, GOMAXPROCS = %d cores shared with the API server, etcd and this client) against a local kube-apiserver + etcd; "+
		"%d SyncFlags streams, each on its own connection with a ServiceAccount token of its own (TokenRequest, the proxy's audience), over %d FeatureFlags in %d namespaces. "+
		"Latency: from the start of the FeatureFlag's Update call (one call, no read before it; a round's calls go out at once, without client-side rate limit) to the stream receiving the new document. "+
		"First → last is the spread of one round, what the fan-out itself adds after the first stream has the change.\n\n", nproc(), o.streams, o.flags, o.namespaces)
	fmt.Println("| | value |")
	fmt.Println("|---|---:|")
	fmt.Printf("| proxy RSS, no stream, %d FeatureFlags | %s |\n", o.flags, mib(idle.rss))
	fmt.Printf("| all %d streams served after | %s (%d TokenReviews, %d SubjectAccessReviews) |\n", o.streams, connect.Round(time.Millisecond),
		int(afterConnect.requests["POST tokenreviews"]-before.requests["POST tokenreviews"]), int(afterConnect.requests["POST subjectaccessreviews"]-before.requests["POST subjectaccessreviews"]))
	fmt.Printf("| proxy RSS with %d streams over %d FeatureFlags (%d more FeatureFlags in the cache): Go heap in use, goroutine stacks, goroutines | %s: %s, %s, %d |\n",
		o.streams, o.flags, o.extra, mib(afterConnect.rss), mib(afterConnect.heap), mib(afterConnect.stacks), afterConnect.goroutines)
	fmt.Printf("| proxy RSS with %d streams on one FeatureFlag: Go heap in use, goroutine stacks, goroutines | %s: %s, %s, %d |\n",
		o.streams, mib(atHot.rss), mib(atHot.heap), mib(atHot.stacks), atHot.goroutines)
	fmt.Println()
	fmt.Println("| rounds | streams a round reaches | to the first stream p50 | to the last stream p50 | p99 | max | first → last p50 / p99 | proxy CPU per round |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range []*result{single, burst, hot} {
		fmt.Printf("| %s (%d×) | %d | %s | %s | %s | %s | %s / %s | %s |\n", r.name, r.rounds, r.need, ms(pct(r.first, 50)), ms(pct(r.last, 50)), ms(pct(r.last, 99)),
			ms(slices.Max(r.last)), ms(pct(r.spread, 50)), ms(pct(r.spread, 99)), ms(r.cpu/time.Duration(r.rounds)))
	}
	fmt.Println()
	fmt.Printf("Every stream's own latency, all %d updates of every FeatureFlag at once: p50 %s, p99 %s.\n\n", burst.rounds*o.streams, ms(pct(burst.each, 50)), ms(pct(burst.each, 99)))
	fmt.Printf("Shared informer: %d FeatureFlags that no stream asks for add %s of Go heap (%s per FeatureFlag of %d bytes of flags) and %s of RSS; it holds one watch. "+
		"One watch per followed FeatureFlag instead (the kubernetes source's informer, %d of them in one process, measured after a GC): %s of heap (%s per FeatureFlag), %d goroutines and %d watches on the API server.\n",
		o.extra, mib(informer.heap), kib(informer.heap/int64(o.extra)), informer.docBytes, mib(informer.rss),
		o.flags, mib(watches.heap), kib(watches.heap/int64(o.flags)), watches.goroutines, o.flags)
	return nil
}

type bench struct {
	o           options
	c           *harness.Cluster
	proxy, mgmt string
	track       *tracker
	rev         int // the last revision written
	// flags is a client without client-side throttling (the updates of a round
	// go out at once); last holds each FeatureFlag as this client last wrote it.
	flags versioned.Interface
	mu    sync.Mutex
	last  map[int]*v1beta1.FeatureFlag
}

// namespace of FeatureFlag i.
func (b *bench) namespace(i int) string { return fmt.Sprintf("fanout-%02d", i%b.o.namespaces) }

// flagName of FeatureFlag i.
func (b *bench) flagName(i int) string { return fmt.Sprintf("flags-%03d", i) }

// document is FeatureFlag i's flags at revision rev: a few flags of every kind, the
// revision in the flag-set metadata (where a stream finds it without parsing).
func document(rev int) v1beta1.FlagSpec {
	spec := v1beta1.FlagSpec{Flags: map[string]v1beta1.Flag{}, Metadata: []byte(fmt.Sprintf(`{"flagSetId":"fanout","rev":"%d"}`, rev))}
	for i := range 10 {
		spec.Flags[fmt.Sprintf("flag-%d", i)] = v1beta1.Flag{State: "ENABLED", DefaultVariant: "off",
			Variants:  []byte(`{"on":true,"off":false}`),
			Targeting: []byte(fmt.Sprintf(`{"if":[{"ends_with":[{"var":"email"},"@example-%d.com"]},"on","off"]}`, i))}
	}
	return spec
}

// populate creates the namespaces, FeatureFlags, a ServiceAccount per namespace
// granted get on its namespace's FeatureFlags (as the webhook would), and the
// proxy's ServiceAccount, ClusterRole and binding.
func (b *bench) populate(ctx context.Context) error {
	k := b.c.Kube
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(proxy.ClusterRoleYAML, &role); err != nil {
		return err
	}
	if _, err := k.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for _, ns := range append([]string{"fanout-ops", "fanout-extra"}, b.namespaces()...) {
		if _, err := k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if _, err := k.CoreV1().ServiceAccounts("fanout-ops").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "flagd-proxy"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "flagpole-flagd-proxy.fanout-ops"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: proxy.ClusterRoleName},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "fanout-ops", Name: "flagd-proxy"}}}
	if _, err := k.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return err
	}
	names := map[string][]string{}
	for i := range b.o.flags {
		ns, name := b.namespace(i), b.flagName(i)
		names[ns] = append(names[ns], name)
		ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: document(0)}}
		if _, err := b.c.Flags.CoreV1beta1().FeatureFlags(ns).Create(ctx, ff, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	for _, ns := range b.namespaces() {
		if _, err := k.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		r := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "web-flags"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1beta1.GroupName},
			Resources: []string{"featureflags"}, ResourceNames: names[ns], Verbs: []string{"get", "list", "watch"}}}}
		if _, err := k.RbacV1().Roles(ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
			return err
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "web-flags"}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "web-flags"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "web"}}}
		if _, err := k.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) namespaces() []string {
	out := make([]string, b.o.namespaces)
	for i := range out {
		out[i] = fmt.Sprintf("fanout-%02d", i)
	}
	return out
}

// tokens returns a token per stream: stream i's is its namespace's ServiceAccount's
// (namespace i % namespaces, the namespace of FeatureFlag i % flags).
func (b *bench) tokens(ctx context.Context) ([]string, error) {
	out := make([]string, b.o.streams)
	expiry := int64(3600)
	errs := make(chan error, b.o.streams)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			tr, err := b.c.Kube.CoreV1().ServiceAccounts(b.namespace(i%b.o.flags)).CreateToken(ctx, "web", &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{Audiences: []string{proxy.DefaultAudience}, ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
			if err != nil {
				errs <- err
				return
			}
			out[i] = tr.Status.Token
		})
	}
	wg.Wait()
	close(errs)
	return out, <-errs
}

// stream is one open SyncFlags stream.
type stream struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	flag   int
}

// tracker records when each stream receives each revision.
type tracker struct {
	mu      sync.Mutex
	pending map[int]*revision // revision → its update and round
}

// revision is one update: when its Update call started, and its round.
type revision struct {
	start time.Time
	round *round
}

type round struct {
	need     int
	arrivals []time.Duration // from the start of the Update call of the revision received
	done     chan struct{}
}

func (t *tracker) arrived(rev int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.pending[rev]
	if r == nil || r.start.IsZero() {
		return
	}
	r.round.arrivals = append(r.round.arrivals, at.Sub(r.start))
	if len(r.round.arrivals) == r.round.need {
		close(r.round.done)
	}
}

// started records the start of revision rev's Update call.
func (t *tracker) started(rev int) {
	t.mu.Lock()
	t.pending[rev].start = time.Now()
	t.mu.Unlock()
}

// revOf finds the revision in a document without parsing it.
func revOf(doc string) int {
	_, rest, found := strings.Cut(doc, `"rev":"`)
	if !found {
		return -1
	}
	n, err := strconv.Atoi(rest[:strings.IndexByte(rest, '"')])
	if err != nil {
		return -1
	}
	return n
}

// open opens a stream per token on FeatureFlag spread[i] and waits for every
// first message.
func (b *bench) open(ctx context.Context, tokens []string, spread []int) ([]*stream, error) {
	out := make([]*stream, len(tokens))
	first := make(chan error, len(tokens))
	for i, tok := range tokens {
		conn, err := grpc.NewClient(b.proxy, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok))
		st := &stream{conn: conn, cancel: cancel, flag: spread[i]}
		out[i] = st
		sel := "core.openfeature.dev/" + b.namespace(st.flag) + "/" + b.flagName(st.flag)
		go func() {
			client, err := syncv1grpc.NewFlagSyncServiceClient(conn).SyncFlags(sctx, &syncv1.SyncFlagsRequest{Selector: sel})
			if err == nil {
				_, err = client.Recv()
			}
			first <- err
			if err != nil {
				return
			}
			for {
				msg, err := client.Recv()
				if err != nil {
					return
				}
				b.track.arrived(revOf(msg.GetFlagConfiguration()), time.Now())
			}
		}()
	}
	deadline := time.After(waitTimeout)
	for range tokens {
		select {
		case err := <-first:
			if err != nil {
				return nil, fmt.Errorf("opening a stream: %w", err)
			}
		case <-deadline:
			return nil, errors.New("the streams were not all served in time")
		}
	}
	return out, nil
}

func (b *bench) close(streams []*stream) {
	for _, s := range streams {
		s.cancel()
		_ = s.conn.Close()
	}
	time.Sleep(2 * time.Second) // the proxy notices and forgets them
}

// result is one kind of update, measured.
type result struct {
	name              string
	rounds, need      int
	first, last, each []time.Duration
	spread            []time.Duration // last - first, per round
	cpu               time.Duration
}

// measure runs rounds: each updates the FeatureFlags flagsOf(round) at once (a new
// revision each) and waits until need streams have received them.
func (b *bench) measure(ctx context.Context, name string, rounds int, flagsOf func(int) []int, need int) (*result, error) {
	r := &result{name: name, rounds: rounds, need: need}
	before, err := b.scrape()
	if err != nil {
		return nil, err
	}
	for u := range rounds {
		flags := flagsOf(u)
		rd := &round{need: need, done: make(chan struct{})}
		revs := make([]int, len(flags))
		b.track.mu.Lock()
		for i := range flags {
			b.rev++
			revs[i] = b.rev
			b.track.pending[revs[i]] = &revision{round: rd}
		}
		b.track.mu.Unlock()
		var wg sync.WaitGroup
		errs := make(chan error, len(flags))
		for i, f := range flags {
			wg.Go(func() { errs <- b.update(ctx, f, revs[i]) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return nil, err
			}
		}
		select {
		case <-rd.done:
		case <-time.After(waitTimeout):
			return nil, fmt.Errorf("%s: round %d: %d of %d streams received it", name, u, len(rd.arrivals), need)
		}
		b.track.mu.Lock()
		for _, rev := range revs {
			delete(b.track.pending, rev)
		}
		arrivals := slices.Clone(rd.arrivals)
		b.track.mu.Unlock()
		r.first = append(r.first, slices.Min(arrivals))
		r.last = append(r.last, slices.Max(arrivals))
		r.spread = append(r.spread, slices.Max(arrivals)-slices.Min(arrivals))
		r.each = append(r.each, arrivals...)
	}
	after, err := b.scrape()
	if err != nil {
		return nil, err
	}
	r.cpu = time.Duration((after.cpu - before.cpu) * float64(time.Second))
	fmt.Fprintf(os.Stderr, "%s: %d rounds, last stream p50 %s p99 %s, CPU %s per round\n", name, rounds, ms(pct(r.last, 50)), ms(pct(r.last, 99)), ms(r.cpu/time.Duration(rounds)))
	return r, nil
}

// update sets FeatureFlag i's document to revision rev: one Update call from the
// version this client wrote last (a conflict reads it again, and is not timed).
func (b *bench) update(ctx context.Context, i, rev int) error {
	ffs := b.flags.CoreV1beta1().FeatureFlags(b.namespace(i))
	b.mu.Lock()
	ff := b.last[i]
	b.mu.Unlock()
	for {
		if ff == nil {
			var err error
			if ff, err = ffs.Get(ctx, b.flagName(i), metav1.GetOptions{}); err != nil {
				return err
			}
		}
		ff.Spec.FlagSpec = document(rev)
		b.track.started(rev)
		updated, err := ffs.Update(ctx, ff, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			ff = nil
			continue
		}
		if err != nil {
			return err
		}
		b.mu.Lock()
		b.last[i] = updated
		b.mu.Unlock()
		return nil
	}
}

// informerCost creates the extra FeatureFlags and returns what they add to the
// proxy's heap and RSS.
func (b *bench) informerCost(ctx context.Context) (struct{ heap, rss, docBytes int64 }, error) {
	var out struct{ heap, rss, docBytes int64 }
	data, err := json.Marshal(document(0))
	if err != nil {
		return out, err
	}
	out.docBytes = int64(len(data))
	before, err := b.scrape()
	if err != nil {
		return out, err
	}
	for i := range b.o.extra {
		ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("extra-%04d", i)}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: document(0)}}
		if _, err := b.c.Flags.CoreV1beta1().FeatureFlags("fanout-extra").Create(ctx, ff, metav1.CreateOptions{}); err != nil {
			return out, err
		}
	}
	time.Sleep(10 * time.Second) // the informer follows within milliseconds; the runtime settles
	after, err := b.scrape()
	if err != nil {
		return out, err
	}
	out.heap, out.rss = after.heap-before.heap, after.rss-before.rss
	return out, nil
}

// scraped is what the proxy's /metrics say.
type scraped struct {
	rss, heap, stacks int64
	goroutines        int
	cpu               float64
	requests          map[string]float64 // "VERB resource" → count
}

func (b *bench) scrape() (scraped, error) {
	out := scraped{requests: map[string]float64{}}
	resp, err := http.Get("http://" + b.mgmt + "/metrics")
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "process_resident_memory_bytes":
			out.rss = int64(v)
		case name == "go_memstats_heap_inuse_bytes":
			out.heap = int64(v)
		case name == "go_memstats_stack_inuse_bytes":
			out.stacks = int64(v)
		case name == "go_goroutines":
			out.goroutines = int(v)
		case name == "process_cpu_seconds_total":
			out.cpu = v
		case strings.HasPrefix(name, "flagpole_kube_requests_total{"):
			labels := map[string]string{}
			for kv := range strings.SplitSeq(strings.TrimSuffix(strings.TrimPrefix(name, "flagpole_kube_requests_total{"), "}"), ",") {
				k, val, _ := strings.Cut(kv, "=")
				labels[k] = strings.Trim(val, `"`)
			}
			out.requests[labels["verb"]+" "+labels["resource"]] += v
		}
	}
	return out, sc.Err()
}

func (b *bench) waitReady(ctx context.Context) error {
	for start := time.Now(); time.Since(start) < waitTimeout; time.Sleep(100 * time.Millisecond) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		resp, err := http.Get("http://" + b.mgmt + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New("the proxy did not become ready")
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10)) }

func nproc() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(data), "processor\t:")
}

// perFlagWatches runs the kubernetes source (an informer on one FeatureFlag, by
// field selector) for every FeatureFlag in this process, until each has delivered
// its flags, and returns what they hold: heap after a GC and goroutines.
func (b *bench) perFlagWatches(ctx context.Context) (struct {
	heap       int64
	goroutines int
}, error) {
	var out struct {
		heap       int64
		goroutines int
	}
	client, err := kubesource.NewRESTClient(rest.CopyConfig(b.c.Config))
	if err != nil {
		return out, err
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	wctx, cancel := context.WithCancel(ctx)
	updates := make(chan flagsync.Update, b.o.flags)
	var wg sync.WaitGroup
	for i := range b.o.flags {
		src, err := kubesource.New(flagsync.SourceConfig{URI: b.namespace(i) + "/" + b.flagName(i), Provider: flagsync.ProviderKubernetes}, zerolog.Nop(), client)
		if err != nil {
			cancel()
			return out, err
		}
		wg.Go(func() { _ = src.Run(wctx, updates) })
	}
	defer func() { cancel(); wg.Wait() }()
	seen := map[string]bool{}
	for len(seen) < b.o.flags {
		select {
		case u := <-updates:
			if u.Err == nil {
				seen[u.Source] = true
			}
		case <-time.After(waitTimeout):
			return out, fmt.Errorf("per-flag watches: %d of %d FeatureFlags delivered", len(seen), b.o.flags)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	out.heap, out.goroutines = int64(m1.HeapInuse)-int64(m0.HeapInuse), runtime.NumGoroutine()-g0 //nolint:gosec // G115: heap sizes are far below 2^63
	return out, nil
}
