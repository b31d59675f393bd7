// Command propagation measures how long a change of a flag file takes to be served by
// a live `flagpole flagd start` (issue 5, item 8): for each change it takes the time
// from the rename that publishes the new file to the moment a ResolveString over
// Connect JSON returns the new value, prompted by the configuration_change event of
// an EventStream subscription. Two kinds of change, each on a fresh flagd with one
// file source:
//
//   - rename: a new file written beside flags.json and renamed over it (editors,
//     deployment tools);
//   - write: flags.json truncated and rewritten in place (not atomic; for comparison);
//   - configmap: a Kubernetes ConfigMap volume update exactly as the kubelet makes it
//     (new `..<timestamp>` directory, `..data_tmp` symlink renamed over `..data`, old
//     directory removed), read through `flags.json -> ..data/flags.json`.
//
// Usage: go run ./bench/propagation [-n 20] [-samples] [-dir /dev/shm]. It prints p50, p99 (nearest rank: with
// 20 changes, the slowest) and the maximum per kind.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	evaluationv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"connectrpc.com/connect"
	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/modes"
)

// waitLimit bounds every wait: a change not served by then is a failure.
const waitLimit = 10 * time.Second

func main() {
	n := flag.Int("n", 20, "changes per kind")
	samples := flag.Bool("samples", false, "also print every sample, with the time the publishing syscall took")
	base := flag.String("dir", "", "where to create the flag directories (default: the system temporary directory)")
	flag.Parse()
	results, err := measureAll(context.Background(), *n, *base)
	if err != nil {
		fmt.Fprintln(os.Stderr, "propagation:", err)
		os.Exit(1)
	}
	fmt.Printf("%d changes per kind, %s, %d CPUs, %s/%s\n\n", *n, runtime.Version(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Println("| change | p50 | p99 | max |")
	fmt.Println("|---|---|---|---|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %s | %s |\n", r.Kind, ms(r.Percentile(50)), ms(r.Percentile(99)), ms(r.Percentile(100)))
	}
	if *samples {
		for _, r := range results {
			fmt.Printf("\n%s:", r.Kind)
			for i, s := range r.Samples {
				fmt.Printf(" %s (%s)", ms(s), ms(r.Publish[i]))
			}
		}
		fmt.Println()
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// Result holds the propagation times of one kind of change.
type Result struct {
	Kind    string
	Samples []time.Duration
	// Publish is how long the publishing syscalls of each sample took (part of it).
	Publish []time.Duration
}

// Percentile returns the nearest-rank percentile p (0 < p ≤ 100) of the samples.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Samples) == 0 {
		return 0
	}
	s := slices.Clone(r.Samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// layout prepares a directory and returns the path flagd reads and a function that
// prepares change i and returns the operation that publishes it (the timed part)
// and what to do after it (not timed, but done at once, as the kubelet does).
type layout struct {
	kind  string
	setup func(dir string) (path string, change func(i int) (publish, after func() error, err error), err error)
}

var layouts = []layout{
	{"rename", func(dir string) (string, func(int) (func() error, func() error, error), error) {
		path := filepath.Join(dir, "flags.json")
		if err := os.WriteFile(path, document(0), 0o600); err != nil {
			return "", nil, err
		}
		return path, func(i int) (func() error, func() error, error) {
			tmp := filepath.Join(dir, fmt.Sprintf(".flags.json.%d", i))
			if err := os.WriteFile(tmp, document(i), 0o600); err != nil {
				return nil, nil, err
			}
			return func() error { return os.Rename(tmp, path) }, nil, nil
		}, nil
	}},
	{"write", func(dir string) (string, func(int) (func() error, func() error, error), error) {
		path := filepath.Join(dir, "flags.json")
		if err := os.WriteFile(path, document(0), 0o600); err != nil {
			return "", nil, err
		}
		return path, func(i int) (func() error, func() error, error) {
			return func() error { return os.WriteFile(path, document(i), 0o600) }, nil, nil
		}, nil
	}},
	{"configmap", func(dir string) (string, func(int) (func() error, func() error, error), error) {
		write := func(i int) (string, error) {
			ts := fmt.Sprintf("..2026_01_01_00_00_00.%09d", i)
			if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(filepath.Join(dir, ts, "flags.json"), document(i), 0o600); err != nil {
				return "", err
			}
			return ts, os.Symlink(ts, filepath.Join(dir, "..data_tmp"))
		}
		swap := func() error { return os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")) }
		ts, err := write(0)
		if err == nil {
			err = swap()
		}
		if err == nil {
			err = os.Symlink(filepath.Join("..data", "flags.json"), filepath.Join(dir, "flags.json"))
		}
		if err != nil {
			return "", nil, err
		}
		current := ts
		return filepath.Join(dir, "flags.json"), func(i int) (func() error, func() error, error) {
			next, err := write(i)
			if err != nil {
				return nil, nil, err
			}
			old := current
			current = next
			return swap, func() error { return os.RemoveAll(filepath.Join(dir, old)) }, nil
		}, nil
	}},
}

// document is the flag file of change i: flag "prop" resolves to "v<i>".
func document(i int) []byte {
	return fmt.Appendf(nil, `{"flags":{"prop":{"state":"ENABLED","variants":{"v":"v%d"},"defaultVariant":"v"}}}`, i)
}

// measureAll measures n changes of every kind, in directories created under base
// ("" for the system temporary directory).
func measureAll(ctx context.Context, n int, base string) ([]Result, error) {
	var out []Result
	for _, l := range layouts {
		r, err := measure(ctx, l, n, base)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.kind, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// measure starts flagd on a fresh directory of the layout and times n changes.
func measure(ctx context.Context, l layout, n int, base string) (_ Result, err error) {
	dir, err := os.MkdirTemp(base, "flagpole-propagation-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	path, change, err := l.setup(dir)
	if err != nil {
		return Result{}, err
	}

	var root struct {
		Flagd modes.FlagdCmd `cmd:""`
	}
	parser, err := kong.New(&root)
	if err != nil {
		return Result{}, err
	}
	if _, err := parser.Parse([]string{"flagd", "start", "-f", "file:" + path, "-p", "0", "-m", "0", "-g", "0", "-r", "0",
		"--bind-address", "127.0.0.1"}); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	addrs := make(chan modes.Addresses, 1)
	var serveErr error
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		serveErr = root.Flagd.Start.Serve(ctx, zerolog.Nop(), modes.BuildInfo{}, func(a modes.Addresses) { addrs <- a })
	}()
	defer func() {
		cancel()
		<-exited
		if err == nil && serveErr != nil {
			err = fmt.Errorf("flagd: %w", serveErr)
		}
	}()
	var a modes.Addresses
	select {
	case a = <-addrs:
	case <-exited:
		return Result{}, fmt.Errorf("flagd did not start: %w", serveErr)
	}
	url := "http://" + a.Evaluation
	if err := waitReady(ctx, "http://"+a.Management+"/readyz"); err != nil {
		return Result{}, err
	}

	events, err := subscribe(ctx, url)
	if err != nil {
		return Result{}, err
	}
	res := Result{Kind: l.kind}
	for i := 1; i <= n; i++ {
		publish, after, err := change(i)
		if err != nil {
			return res, err
		}
		want := fmt.Sprintf("v%d", i)
		start := time.Now()
		if err := publish(); err != nil {
			return res, err
		}
		published := time.Since(start)
		if after != nil {
			if err := after(); err != nil {
				return res, err
			}
		}
		if err := waitServed(ctx, url, events, want); err != nil {
			return res, fmt.Errorf("change %d: %w", i, err)
		}
		res.Samples = append(res.Samples, time.Since(start))
		res.Publish = append(res.Publish, published)
		time.Sleep(20 * time.Millisecond) // changes come one at a time, not in a burst
	}
	return res, nil
}

// subscribe opens an EventStream and returns its event types; it waits for
// provider_ready.
func subscribe(ctx context.Context, base string) (<-chan string, error) {
	client := evaluationv1connect.NewServiceClient(http.DefaultClient, base)
	stream, err := client.EventStream(ctx, connect.NewRequest(&evaluationv1.EventStreamRequest{}))
	if err != nil {
		return nil, err
	}
	events := make(chan string, 100)
	go func() {
		defer close(events)
		defer func() { _ = stream.Close() }()
		for stream.Receive() {
			events <- stream.Msg().GetType()
		}
	}()
	select {
	case typ, ok := <-events:
		if !ok || typ != "provider_ready" {
			return nil, fmt.Errorf("event stream: got %q first, want provider_ready (%v)", typ, stream.Err()) //nolint:errorlint // %v: nil when the stream ended cleanly, which %w would print as %!w(<nil>)
		}
	case <-time.After(waitLimit):
		return nil, errors.New("event stream: no provider_ready")
	}
	return events, nil
}

// waitServed waits for configuration_change events until ResolveString returns want.
func waitServed(ctx context.Context, base string, events <-chan string, want string) error {
	deadline := time.After(waitLimit)
	for {
		select {
		case typ, ok := <-events:
			if !ok {
				return errors.New("the event stream ended")
			}
			if typ != "configuration_change" {
				continue
			}
		case <-deadline:
			return fmt.Errorf("%s not served within %s", want, waitLimit)
		}
		got, err := resolveString(ctx, base, "prop")
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
	}
}

// resolveString resolves a flag over Connect JSON, as an HTTP client would.
func resolveString(ctx context.Context, base, key string) (string, error) {
	body := fmt.Sprintf(`{"flagKey":%q}`, key)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/flagd.evaluation.v1.Service/ResolveString", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ResolveString %s: %s: %s", key, resp.Status, bytes.TrimSpace(b))
	}
	var out struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return "", fmt.Errorf("ResolveString %s: %w: %s", key, err, b)
	}
	return out.Value, nil
}

// waitReady polls /readyz until it answers 200.
func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s never became ready", url)
}
