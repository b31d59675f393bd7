// Package floor is the load harness's floor server: the listener stack flagd mode
// uses (server.Serve with grpc-go behind the protocol split, the same timeouts and
// limits, TLS through server.CertReloader, a unix socket) around handlers that do
// no work, so that what a workload costs on top of the transport can be told from
// what the transport costs. The HTTP handler reads the body and writes a fixed
// Connect JSON answer; the gRPC handler reads the request message and sends a
// fixed ResolveBoolean response, both the bytes flagd mode answers for the load
// harness's static-bool flag. With a bulk answer (-bulk-answer), a POST to the OFREP
// bulk path is answered with those bytes: the transport's cost of a body that size.
// With a flag file (-flags-file), the floor also holds streams that send it and
// again after each change: SyncFlags on a sync listener (-sync-addr, flagd mode's
// sync server around a service doing no work) and EventStream on the gRPC floor.
package floor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/flagpole-dev/flagpole/flagd/service/syncserver"
	"github.com/flagpole-dev/flagpole/server"
)

// HTTPAnswer is the body the HTTP handler writes (Connect JSON, as flagd mode
// answers ResolveBoolean for static-bool).
const HTTPAnswer = `{"value":true,"reason":"STATIC","variant":"on","metadata":{}}`

// GRPCAnswer is the ResolveBoolean response the gRPC handler sends:
// value true, reason STATIC, variant "on", metadata {}.
var GRPCAnswer = []byte{0x08, 0x01, 0x12, 0x06, 'S', 'T', 'A', 'T', 'I', 'C', 0x1a, 0x02, 'o', 'n', 0x22, 0x00}

// BulkPath is the path answered with Options.BulkAnswer (OFREP bulk evaluation).
const BulkPath = "/ofrep/v1/evaluate/flags"

// BulkETag is the ETag of the fixed bulk answer (a strong tag, as flagd mode's).
const BulkETag = `"floor-bulk"`

// GRPCMethod is the method the gRPC handler serves.
const GRPCMethod = "/flagd.evaluation.v1.Service/ResolveBoolean"

// Options say where the floor server listens; empty addresses are not served.
type Options struct {
	Addr, TLSAddr, Socket string
	CertFile, KeyFile     string // for TLSAddr
	// BulkAnswer, when set, is the body of the answer to a POST to BulkPath.
	BulkAnswer []byte
	// SyncAddr serves FlagSyncService (SyncFlags sending FlagsFile) on this
	// address; it needs FlagsFile.
	SyncAddr string
	// FlagsFile is the flag file the streams send (and send again when it changes).
	FlagsFile string
}

// Main runs the floor server with command-line arguments until SIGTERM or SIGINT
// and returns the exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet("floorserve", flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.Addr, "addr", "", "plaintext listener (HTTP/1.1, h2c, gRPC)")
	fs.StringVar(&o.TLSAddr, "tls-addr", "", "TLS listener")
	fs.StringVar(&o.Socket, "socket", "", "unix socket listener")
	fs.StringVar(&o.CertFile, "cert", "", "server certificate (PEM) of the TLS listener")
	fs.StringVar(&o.KeyFile, "key", "", "server key (PEM) of the TLS listener")
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	bulk := fs.String("bulk-answer", "", "answer POST "+BulkPath+" with the contents of this file")
	fs.StringVar(&o.SyncAddr, "sync-addr", "", "plaintext sync listener: SyncFlags streams sending -flags-file")
	fs.StringVar(&o.FlagsFile, "flags-file", "", "the flag file SyncFlags and EventStream streams send, and send again when it changes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *bulk != "" {
		b, err := os.ReadFile(*bulk)
		if err != nil {
			fmt.Fprintln(os.Stderr, "floorserve:", err)
			return 1
		}
		o.BulkAnswer = b
	}
	if *cpu != "" {
		f, err := os.Create(*cpu)
		if err != nil {
			fmt.Fprintln(os.Stderr, "floorserve:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "floorserve:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "floorserve:", err)
		return 1
	}
	return 0
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	base := server.ListenConfig{ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1_000_000, Conns: server.NewConnLimit(10000, log)}
	var cfgs []server.ListenConfig
	if o.Addr != "" {
		c := base
		c.Name, c.Address = "floor", o.Addr
		cfgs = append(cfgs, c)
	}
	if o.TLSAddr != "" {
		r, err := server.NewCertReloader(o.CertFile, o.KeyFile)
		if err != nil {
			return err
		}
		c := base
		c.Name, c.Address, c.TLS = "floor-tls", o.TLSAddr, r.TLSConfig()
		cfgs = append(cfgs, c)
	}
	if o.Socket != "" {
		c := base
		c.Name, c.SocketPath = "floor-unix", o.Socket
		cfgs = append(cfgs, c)
	}
	if len(cfgs) == 0 {
		return errors.New("no listener: give -addr, -tls-addr or -socket")
	}
	if o.SyncAddr != "" && o.FlagsFile == "" {
		return errors.New("-sync-addr needs -flags-file")
	}
	var f *feed
	if o.FlagsFile != "" {
		path, err := filepath.Abs(o.FlagsFile)
		if err != nil {
			return err
		}
		if f, err = newFeed(path); err != nil {
			return err
		}
		o.FlagsFile = path
	}
	h := &handler{bulk: o.BulkAnswer, bulkLength: []string{strconv.Itoa(len(o.BulkAnswer))}}
	var wg sync.WaitGroup
	errs := make(chan error, len(cfgs)+2)
	for _, c := range cfgs {
		ln, err := server.Listen(c)
		if err != nil {
			return err
		}
		c.GRPC = newGRPC(ctx, c, f)
		wg.Go(func() {
			errs <- server.Serve(ctx, ln, c, h, log, nil)
		})
	}
	if f != nil {
		wg.Go(func() { errs <- f.watch(ctx, o.FlagsFile, log) })
	}
	if o.SyncAddr != "" {
		c := server.ListenConfig{Name: "floor-sync", Address: o.SyncAddr}
		ln, err := server.Listen(c)
		if err != nil {
			return err
		}
		s := syncserver.New(syncserver.Options{Service: &syncFloor{feed: f, ctx: ctx}, Log: log})
		wg.Go(func() { errs <- s.Serve(ctx, base.Conns.Listener(ln, c.Name, nil)) })
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

var (
	bodies      = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}
	contentType = []string{"application/json"}
	bulkETag    = []string{BulkETag}
	answer      = []byte(HTTPAnswer)
)

// handler is the HTTP floor: it reads the body and writes a fixed answer.
type handler struct {
	bulk       []byte   // the answer of BulkPath, if any
	bulkLength []string // its Content-Length, as flagd mode sends it
}

// ServeHTTP reads the body and writes the fixed answer.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := bodies.Get().(*[]byte)
	for {
		if _, err := r.Body.Read(*buf); err != nil {
			if !errors.Is(err, io.EOF) {
				bodies.Put(buf)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			break
		}
	}
	bodies.Put(buf)
	w.Header()["Content-Type"] = contentType
	if h.bulk != nil && r.URL.Path == BulkPath {
		w.Header()["Etag"] = bulkETag
		w.Header()["Content-Length"] = h.bulkLength
		_, _ = w.Write(h.bulk)
		return
	}
	_, _ = w.Write(answer)
}

// rawMessage is a message as bytes (the gRPC handler's codec).
type rawMessage struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMessage).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMessage).b = data.Materialize()
	return nil
}

// newGRPC is the gRPC floor: the listener's options, one unary method answering
// GRPCAnswer, and EventStream (streams end with ctx; f may be nil: no changes).
func newGRPC(ctx context.Context, c server.ListenConfig, f *feed) *grpc.Server {
	g := grpc.NewServer(append(server.GRPCServerOptions(c), grpc.ForceServerCodecV2(rawCodec{}))...)
	service, method, _ := strings.Cut(strings.TrimPrefix(GRPCMethod, "/"), "/")
	reply := &rawMessage{b: GRPCAnswer}
	g.RegisterService(&grpc.ServiceDesc{ServiceName: service, HandlerType: (*any)(nil), Methods: []grpc.MethodDesc{{
		MethodName: method,
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req rawMessage
			if err := dec(&req); err != nil {
				return nil, err
			}
			server.RequestReceived(ctx)
			return reply, nil
		},
	}}, Streams: []grpc.StreamDesc{{
		StreamName:    strings.TrimPrefix(EventStreamMethod, "/"+service+"/"),
		ServerStreams: true,
		Handler:       eventStreamHandler(ctx, f),
	}}}, struct{}{})
	return g
}

// Addr is a helper for callers that picked a port: host:port on loopback.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", fmt.Sprint(port)) }
