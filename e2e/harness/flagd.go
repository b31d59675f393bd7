package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Flagd is a `flagpole flagd start` subprocess listening on loopback ports it picked
// itself (port 0), logging JSON to a file.
type Flagd struct {
	// Proc is the process.
	Proc *Process
	// Evaluation, Management, Sync and OFREP are the bound host:port addresses, read
	// from the process's "serving" log lines.
	Evaluation, Management, Sync, OFREP string

	client *http.Client
}

// flagdStartTimeout bounds the wait for the "serving" lines.
const flagdStartTimeout = 30 * time.Second

// StartFlagd runs bin (a flagpole binary) as `flagpole flagd start` with the given
// extra args (e.g. --uri ...), on 127.0.0.1 and free ports, with JSON logs in dir, and
// with env added to a copy of the test's environment from which every FLAGD_*,
// FLAGPOLE_*, KUBECONFIG and in-cluster variable is removed. The janitor stops it if
// the caller does not.
func StartFlagd(ctx context.Context, j *Janitor, bin, dir string, env []string, args ...string) (*Flagd, error) {
	all := append([]string{"flagd", "start", "--bind-address", "127.0.0.1", "-p", "0", "-m", "0", "-g", "0", "-r", "0"}, args...)
	p, addrs, err := StartFlagpole(ctx, j, bin, dir, env, []string{"evaluation", "management", "sync", "ofrep"}, all...)
	if err != nil {
		return nil, err
	}
	return &Flagd{Proc: p, client: &http.Client{Timeout: 5 * time.Second},
		Evaluation: addrs["evaluation"], Management: addrs["management"], Sync: addrs["sync"], OFREP: addrs["ofrep"]}, nil
}

// StartFlagpole runs bin with JSON logs at info level in dir, the given
// subcommand args and env (added to cleanEnv), and waits until it has logged a
// "serving" line for each of the listeners; it returns their bound addresses by
// listener name. The janitor stops the process if the caller does not.
func StartFlagpole(ctx context.Context, j *Janitor, bin, dir string, env, listeners []string, args ...string) (*Process, map[string]string, error) {
	all := append([]string{"--log-format", "json", "--log-level", "info"}, args...)
	p, err := StartProcess("flagpole", bin, all, append(cleanEnv(), env...), filepath.Join(dir, "flagpole.log"))
	if err != nil {
		return nil, nil, err
	}
	j.Track(p)
	ctx, cancel := context.WithTimeout(ctx, flagdStartTimeout)
	defer cancel()
	for {
		addrs := map[string]string{}
		for _, e := range ReadLogs(p.LogPath) {
			if e.Message() == "serving" {
				addrs[e.String("listener")] = e.String("address")
			}
		}
		missing := false
		for _, l := range listeners {
			missing = missing || addrs[l] == ""
		}
		if !missing {
			return p, addrs, nil
		}
		select {
		case <-p.Done():
			return nil, nil, p.exitedError()
		case <-ctx.Done():
			p.Kill()
			return nil, nil, fmt.Errorf("flagpole did not log its listeners %v within %s; log:\n%s", listeners, flagdStartTimeout, p.Tail(40))
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
}

// cleanEnv is the test's environment without variables that would configure flagd or
// point it at a cluster.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "FLAGD_"), strings.HasPrefix(name, "FLAGPOLE_"),
			name == "KUBECONFIG", strings.HasPrefix(name, "KUBERNETES_SERVICE_"):
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Stop stops flagpole (SIGTERM) and reports whether it shut down cleanly in time.
func (f *Flagd) Stop() error {
	f.client.CloseIdleConnections()
	if err := f.Proc.Stop(stopGrace); err != nil {
		return err
	}
	if err := f.Proc.Err(); err != nil {
		return fmt.Errorf("flagpole exited with %w after SIGTERM (want a clean shutdown)", err)
	}
	return nil
}

// LogEntry is one JSON log line.
type LogEntry map[string]any

// String is the string field name, or "".
func (e LogEntry) String(name string) string {
	s, _ := e[name].(string)
	return s
}

// Message is the entry's message.
func (e LogEntry) Message() string { return e.String("message") }

// Level is the entry's level.
func (e LogEntry) Level() string { return e.String("level") }

// Text is the entry as logged.
func (e LogEntry) Text() string {
	data, _ := json.Marshal(map[string]any(e)) //nolint:errchkjson // decoded from a JSON line: it encodes again
	return string(data)
}

// Logs parses the log written so far; lines that are not JSON objects are kept
// under "message".
func (f *Flagd) Logs() []LogEntry { return ReadLogs(f.Proc.LogPath) }

// ReadLogs parses a JSON log file written so far; lines that are not JSON objects
// are kept under "message".
func ReadLogs(path string) []LogEntry {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []LogEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var e LogEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			e = LogEntry{"message": sc.Text()}
		}
		out = append(out, e)
	}
	return out
}

// WaitLog waits up to timeout for a log entry, from the from-th on (to skip what was
// logged before an action), that match accepts, and returns it with its index.
func (f *Flagd) WaitLog(ctx context.Context, from int, timeout time.Duration, match func(LogEntry) bool) (LogEntry, int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		logs := f.Logs()
		for i := from; i < len(logs); i++ {
			if match(logs[i]) {
				return logs[i], i, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("no matching log entry within %s; last lines:\n%s", timeout, f.Proc.Tail(30))
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
}

// Resolution is the JSON answer of flagd.evaluation.v1 Resolve* (Connect) and OFREP.
type Resolution struct {
	Value   any    `json:"value"`
	Variant string `json:"variant"`
	Reason  string `json:"reason"`
	// ErrorCode is OFREP's error code; Connect errors are returned as errors.
	ErrorCode string `json:"errorCode"`
}

// Resolve calls flagd.evaluation.v1.Service/<method> (e.g. ResolveString) over Connect
// with JSON and an empty context. A Connect error is returned as an error holding
// the HTTP status and body.
func (f *Flagd) Resolve(ctx context.Context, method, key string) (Resolution, error) {
	body, _ := json.Marshal(map[string]any{"flagKey": key, "context": map[string]any{}}) //nolint:errchkjson // a string and an empty object always encode
	return f.post(ctx, "http://"+f.Evaluation+"/flagd.evaluation.v1.Service/"+method, body)
}

// OFREPEvaluate calls OFREP's single-flag evaluation with an empty context.
func (f *Flagd) OFREPEvaluate(ctx context.Context, key string) (Resolution, error) {
	return f.post(ctx, "http://"+f.OFREP+"/ofrep/v1/evaluate/flags/"+key, []byte(`{"context":{}}`))
}

// post sends a JSON POST and decodes a 200 answer.
func (f *Flagd) post(ctx context.Context, url string, body []byte) (Resolution, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Resolution{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return Resolution{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Resolution{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Resolution{}, fmt.Errorf("POST %s: %s: %s", url, resp.Status, data)
	}
	var r Resolution
	if err := json.Unmarshal(data, &r); err != nil {
		return Resolution{}, fmt.Errorf("POST %s: %w: %s", url, err, data)
	}
	return r, nil
}

// Readyz returns the management listener's /readyz status code and body.
func (f *Flagd) Readyz(ctx context.Context) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+f.Management+"/readyz", nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(data), nil
}

// WaitReadyz waits up to timeout for /readyz to answer want.
func (f *Flagd) WaitReadyz(ctx context.Context, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		code, body, err := f.Readyz(ctx)
		if err == nil && code == want {
			return nil
		}
		last = fmt.Sprintf("%d %s (%v)", code, body, err)
		select {
		case <-f.Proc.Done():
			return f.Proc.exitedError()
		case <-ctx.Done():
			return fmt.Errorf("/readyz not %d within %s, last answer %s; last log lines:\n%s", want, timeout, last, f.Proc.Tail(30))
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
}
