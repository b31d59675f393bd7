package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
)

// wrkTarget is the HTTP request of a workload that wrk can replay (wrk checks status
// codes only, not bodies).
func wrkTarget(name string, s *server) (url, body string, ok bool) {
	switch name {
	case wlConnectStatic:
		return "http://" + s.eval + "/flagd.evaluation.v1.Service/ResolveBoolean", connectStaticBody, true
	case wlConnectTargeting:
		return "http://" + s.eval + "/flagd.evaluation.v1.Service/ResolveBoolean", connectTargetingBody, true
	case wlOFREPSingle:
		return "http://" + s.ofrep + "/ofrep/v1/evaluate/flags/" + flaggen.StaticBoolKey, ofrepSingleBody, true
	case wlOFREPBulk:
		return "http://" + s.ofrep + "/ofrep/v1/evaluate/flags", ofrepBulkBody, true
	}
	return "", "", false
}

// runWrk replays a workload with wrk (1 thread, o.clients connections, o.duration),
// as the issue measured flagd. Non-2xx answers and socket errors count as errors.
func runWrk(ctx context.Context, wrk, dir, name string, s *server, o runOptions) (result, error) {
	res := result{name: name + " (wrk)", clients: o.clients}
	url, body, ok := wrkTarget(name, s)
	if !ok {
		return res, fmt.Errorf("%s: wrk cannot replay it", name)
	}
	script := filepath.Join(dir, "wrk-"+name+".lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %s\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", luaString(body))
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return res, err
	}
	secs := max(1, int(o.duration.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, wrk, "-t1", "-c"+strconv.Itoa(o.clients), "-d"+strconv.Itoa(secs)+"s",
		"--timeout", strconv.Itoa(max(1, int(o.timeout/time.Second)))+"s", "--latency", "-s", script, url)
	sampler := sampleRSS(s.pid, 50*time.Millisecond)
	srvCPU0, _ := cpuTime(s.pid)
	selfCPU0 := selfCPUTime()
	busy0, _ := systemBusy()
	start := time.Now()
	out, err := cmd.Output()
	res.elapsed = time.Since(start)
	busy1, _ := systemBusy()
	selfCPU := selfCPUTime() - selfCPU0
	res.maxRSS = sampler.stop()
	srvCPU1, cpuErr := cpuTime(s.pid)
	res.serverCPU = srvCPU1 - srvCPU0
	res.serverDiedEarly = cpuErr != nil || !s.alive()
	if err != nil {
		return res, fmt.Errorf("%s: wrk: %w\n%s", name, err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.harnessCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	res.otherCPU = max(0, busy1-busy0-res.serverCPU-res.harnessCPU-selfCPU)
	if err := parseWrk(out, &res); err != nil {
		return res, fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	return res, nil
}

// parseWrk reads wrk's --latency report: requests and duration, 50% and 99%
// latencies, non-2xx/3xx responses and socket errors.
func parseWrk(out []byte, res *result) error {
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "50%":
			res.p50, seen = wrkDuration(f[1]), seen+1
		case len(f) == 2 && f[0] == "99%":
			res.p99, seen = wrkDuration(f[1]), seen+1
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return fmt.Errorf("wrk requests %q: %w", f[0], err)
			}
			res.requests, seen = n, seen+1
			if d := wrkDuration(strings.TrimSuffix(f[3], ",")); d > 0 {
				res.elapsed = d
			}
		case strings.HasPrefix(sc.Text(), "  Non-2xx or 3xx responses:") && len(f) == 5:
			n, _ := strconv.ParseInt(f[4], 10, 64)
			res.errors += n
			res.firstError = "non-2xx/3xx responses"
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			for part := range strings.SplitSeq(strings.Join(f[2:], " "), ",") {
				kv := strings.Fields(part)
				if len(kv) == 2 {
					n, _ := strconv.ParseInt(kv[1], 10, 64)
					res.errors += n
				}
			}
			if res.firstError == "" {
				res.firstError = "socket errors"
			}
		}
	}
	if seen != 3 {
		return fmt.Errorf("unexpected wrk output")
	}
	res.requests -= res.errors
	return nil
}

// wrkDuration parses wrk's durations ("812.00us", "1.20ms", "10.00s", "1.00m").
func wrkDuration(s string) time.Duration {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return time.Duration(f * float64(u.unit))
		}
	}
	return 0
}

// luaString quotes s as a Lua long string.
func luaString(s string) string {
	eq := ""
	for strings.Contains(s, "]"+eq+"]") {
		eq += "="
	}
	return "[" + eq + "[" + s + "]" + eq + "]"
}
