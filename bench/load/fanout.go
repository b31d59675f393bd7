package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
)

// The fan-out workloads hold many streams on one daemon, as the in-process
// providers of a busy namespace hold SyncFlags streams (and rpc providers
// EventStreams), then change the flag file and time how long every stream takes to
// hear of it. Each stream has its own connection, as each provider has. A change
// rewrites the flag file with one variant value of StaticStringKey set to a marker
// naming the change, and renames it over the served file, as the kubelet updates a
// ConfigMap volume.

// fanoutResult is the outcome of a fan-out workload.
type fanoutResult struct {
	name, server  string
	round         int
	flags         int
	streams       int
	heapIdle      int64         // Go heap in use with the streams idle (go_memstats_heap_inuse_bytes; 0: unknown)
	stacksIdle    int64         // goroutine stacks (go_memstats_stack_inuse_bytes)
	openAll       time.Duration // until every stream had its first message
	rssBefore     int64         // server RSS before the streams opened
	rssIdle       int64         // with every stream open and idle
	rssIdleFile   int64         // of which pages of the binary (RssFile)
	messageBytes  int           // size of the first message of a stream
	first, last   []time.Duration
	serverCPU     time.Duration // during the changes
	harnessCPU    time.Duration
	otherCPU      time.Duration
	changesWindow time.Duration
	errors        int
	firstError    string
}

// fanoutOptions configure runFanout.
type fanoutOptions struct {
	streams, changes int
	settle, timeout  time.Duration
	flagsFile        string // the file the server serves (renamed over for each change)
	doc              []byte // its first contents
}

// markerDoc is doc with StaticStringKey's "off" variant set to the marker of change c.
func markerDoc(doc []byte, c int) ([]byte, []byte, error) {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, nil, err
	}
	flagsMap, _ := m["flags"].(map[string]any)
	f, _ := flagsMap[flaggen.StaticStringKey].(map[string]any)
	variants, _ := f["variants"].(map[string]any)
	if variants == nil {
		return nil, nil, fmt.Errorf("the flag document has no %s", flaggen.StaticStringKey)
	}
	marker := fmt.Sprintf("fanout-change-%05d", c)
	variants["off"] = marker
	out, err := json.Marshal(m)
	return out, []byte(marker), err
}

// fanoutStream is one stream's receiving side.
type fanoutStream struct {
	got     []atomic.Int64 // per change: unix nanoseconds the stream heard of it (0: not yet)
	opened  chan struct{}
	size    int
	err     error
	changes atomic.Int32 // configuration_change messages seen (EventStream)
}

// runFanout runs a fan-out workload against s.
func runFanout(ctx context.Context, w workload, s *server, o fanoutOptions) (fanoutResult, error) {
	res := fanoutResult{name: w.name, server: s.label, streams: o.streams}
	markers := make([][]byte, o.changes)
	docs := make([][]byte, o.changes)
	for c := range o.changes {
		var err error
		if docs[c], markers[c], err = markerDoc(o.doc, c); err != nil {
			return res, err
		}
	}
	res.rssBefore, _ = rssBytes(s.pid)

	method, target, req := "/flagd.sync.v1.FlagSyncService/SyncFlags", s.sync, proto.Message(&syncv1.SyncFlagsRequest{ProviderId: "load-harness"})
	if w.name == wlEventFanout {
		method, target, req = "/flagd.evaluation.v1.Service/EventStream", s.eval, &evalv1.EventStreamRequest{}
	}
	reqBytes, err := proto.Marshal(req)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := make([]*fanoutStream, o.streams)
	conns := make([]*grpc.ClientConn, 0, o.streams)
	defer func() {
		cancel()
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range streams {
		st := &fanoutStream{got: make([]atomic.Int64, o.changes), opened: make(chan struct{})}
		streams[i] = st
		conn, err := dialGRPC(grpcTarget{target: target, creds: insecure.NewCredentials()})
		if err != nil {
			return res, err
		}
		conns = append(conns, conn)
		wg.Go(func() {
			st.err = receive(ctx, conn, method, reqBytes, w.name == wlEventFanout, markers, st)
		})
	}
	openDeadline := time.NewTimer(o.timeout + time.Duration(o.streams)*50*time.Millisecond)
	defer openDeadline.Stop()
	for i, st := range streams {
		select {
		case <-st.opened:
		case <-openDeadline.C:
			// receive has not returned (it closes opened first), so st.err holds
			// nothing yet, and reading it would race with its write
			return res, fmt.Errorf("%s: stream %d of %d had no first message within %v", w.name, i, o.streams, o.timeout+time.Duration(o.streams)*50*time.Millisecond)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	res.openAll = time.Since(start)
	res.messageBytes = streams[0].size
	sleep(ctx, o.settle)
	res.rssIdle, _ = rssBytes(s.pid)
	res.rssIdleFile, _ = procStatus(s.pid, "RssFile")
	res.heapIdle, res.stacksIdle = metricInt(s.mgmt, "go_memstats_heap_inuse_bytes"), metricInt(s.mgmt, "go_memstats_stack_inuse_bytes")

	srvCPU0, _ := cpuTime(s.pid)
	selfCPU0 := selfCPUTime()
	busy0, _ := systemBusy()
	window := time.Now()
	tmp := filepath.Join(filepath.Dir(o.flagsFile), ".fanout-next.json")
	for c := range o.changes {
		if err := os.WriteFile(tmp, docs[c], 0o600); err != nil {
			return res, err
		}
		t0 := time.Now()
		if err := os.Rename(tmp, o.flagsFile); err != nil {
			return res, err
		}
		deadline := t0.Add(o.timeout)
		first, last, missing := waitChange(ctx, streams, c, t0, deadline)
		if missing > 0 {
			res.errors += missing
			if res.firstError == "" {
				res.firstError = fmt.Sprintf("change %d: %d of %d streams did not hear of it within %v", c, missing, o.streams, o.timeout)
			}
			continue
		}
		res.first, res.last = append(res.first, first), append(res.last, last)
		sleep(ctx, 100*time.Millisecond) // the next change starts from quiet
	}
	res.changesWindow = time.Since(window)
	srvCPU1, _ := cpuTime(s.pid)
	busy1, _ := systemBusy()
	res.serverCPU, res.harnessCPU = srvCPU1-srvCPU0, selfCPUTime()-selfCPU0
	res.otherCPU = max(0, busy1-busy0-res.serverCPU-res.harnessCPU)
	cancel()
	wg.Wait()
	for _, st := range streams {
		if st.err != nil && !errors.Is(st.err, context.Canceled) && res.firstError == "" {
			res.firstError = st.err.Error()
		}
	}
	return res, nil
}

// waitChange waits until every stream heard of change c, or the deadline; it
// returns the first and the last stream's delay and how many streams missed it.
func waitChange(ctx context.Context, streams []*fanoutStream, c int, t0, deadline time.Time) (first, last time.Duration, missing int) {
	for {
		missing = 0
		var lo, hi int64
		for _, st := range streams {
			t := st.got[c].Load()
			if t == 0 {
				missing++
				continue
			}
			if lo == 0 || t < lo {
				lo = t
			}
			hi = max(hi, t)
		}
		if missing == 0 {
			return time.Duration(lo - t0.UnixNano()), time.Duration(hi - t0.UnixNano()), 0
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, 0, missing
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// receive holds one stream: the first message opens it; then each message naming a
// change's marker (SyncFlags), or each configuration_change in order (EventStream),
// records when the stream heard of that change.
func receive(ctx context.Context, conn *grpc.ClientConn, method string, req []byte, events bool, markers [][]byte, st *fanoutStream) error {
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		close(st.opened)
		return err
	}
	if err := stream.SendMsg(&frame{b: req}); err != nil {
		close(st.opened)
		return err
	}
	if err := stream.CloseSend(); err != nil {
		close(st.opened)
		return err
	}
	var msg frame
	first := true
	next := 0 // the next change a SyncFlags payload may name
	for {
		if err := stream.RecvMsg(&msg); err != nil {
			if first {
				close(st.opened)
			}
			return err
		}
		now := time.Now().UnixNano()
		if first {
			first = false
			st.size = len(msg.b)
			close(st.opened)
			continue
		}
		if events {
			if bytes.Contains(msg.b, []byte("configuration_change")) {
				if c := int(st.changes.Add(1)) - 1; c < len(st.got) {
					st.got[c].CompareAndSwap(0, now)
				}
			}
			continue
		}
		for c := next; c < len(markers); c++ {
			if bytes.Contains(msg.b, markers[c]) {
				st.got[c].CompareAndSwap(0, now)
				next = c + 1
				break
			}
		}
	}
}

// percentileOf returns the q-quantile (nearest rank) of durations.
func percentileOf(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return percentile(s, q)
}
