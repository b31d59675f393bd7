package server

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2/hpack"
)

// A listener with ListenConfig.GRPC set serves two servers on one port: grpc-go for
// the connections whose first request is gRPC with the protobuf codec, net/http for
// everything else (HTTP/1.1, and HTTP/2 carrying gRPC-Web, Connect, or gRPC with
// another codec). Go's HTTP/2 server writes every frame of a response with its own
// write and hands each frame between three goroutines, which makes a small unary
// gRPC call cost about twice what grpc-go's transport needs.
//
// The decision is made once per connection, from what the client sends first: not
// the HTTP/2 preface, HTTP/1.x; the preface, then the first HEADERS frame, whose
// Content-Type (HPACK-decoded) decides. Every byte read is replayed to the chosen
// server, so it sees the connection as the client sent it. Two things are done on
// the way, because some clients (grpc-go, grpc-java) send no request before they
// have the server's SETTINGS: an empty SETTINGS frame is sent after the preface
// (the client's acknowledgement of it is removed from the stream, as the chosen
// server would not expect it), and PINGs arriving before the first request are
// answered (and removed).
//
// A connection therefore stays with the server of its first request. grpc-go
// serves gRPC only, so a connection whose first request carries a header that
// proxies add (X-Forwarded-For, Via, Envoy's and Linkerd's headers: proxies pool
// the requests of many clients, gRPC and not, on one connection) goes to net/http
// whatever it carries. A client that sends gRPC first and then Connect or gRPC-Web
// on the same HTTP/2 connection without going through such a proxy gets grpc-go's
// 415 for the latter (docs/compatibility.md); gRPC libraries and the SDK providers
// never do.

// h2Preface is the HTTP/2 client connection preface.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// HTTP/2 frame types and flags the sniffer reads (RFC 9113 §6).
const (
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameSettings     = 0x4
	framePing         = 0x6
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	frameHeaderLen  = 9
	maxInitialFrame = 16384 // SETTINGS_MAX_FRAME_SIZE before the client knows ours
)

// emptySettings is a SETTINGS frame without parameters: the server's connection
// preface, which leaves every setting at its default until the real server sends
// its own.
var emptySettings = []byte{0, 0, 0, frameSettings, 0, 0, 0, 0, 0}

// isGRPCProto reports whether a Content-Type is gRPC with the protobuf codec, as
// grpc-go serves it with a forced protobuf codec.
func isGRPCProto(ct string) bool {
	for _, base := range []string{"application/grpc", "application/grpc+proto"} {
		if ct == base || strings.HasPrefix(ct, base+";") {
			return true
		}
	}
	return false
}

// route is where a connection goes.
type route uint8

const (
	routeHTTP route = iota
	routeGRPC
	routeClose // nothing usable arrived (timeout, EOF): the connection is closed
)

// connQueue is a net.Listener whose connections are handed to it by the splitter.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next connection handed over, or net.ErrClosed once closed.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close stops handing over; connections offered afterwards are closed.
func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

// Addr is the real listener's address.
func (q *connQueue) Addr() net.Addr { return q.addr }

// push hands c to the server accepting on q (closing c if q is closed).
func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		_ = c.Close()
	}
}

// splitter accepts the connections of one listener and routes each to the gRPC or
// the HTTP queue.
type splitter struct {
	ln         net.Listener
	tls        *tls.Config // nil: plaintext (h2c or HTTP/1.1)
	first      time.Duration
	idle       time.Duration
	maxHeaders int
	grpc, http *connQueue
	log        zerolog.Logger

	mu      sync.Mutex
	closed  bool
	sniffed map[net.Conn]struct{} // connections being classified
	wg      sync.WaitGroup
}

func newSplitter(ln net.Listener, cfg ListenConfig, log zerolog.Logger) *splitter {
	first := cfg.ReadHeaderTimeout
	if first <= 0 {
		first = 10 * time.Second
	}
	maxHeaders := cfg.MaxHeaderBytes
	if maxHeaders <= 0 {
		maxHeaders = 1 << 20 // net/http's DefaultMaxHeaderBytes
	}
	var tlsConf *tls.Config
	if cfg.TLS != nil {
		tlsConf = cfg.TLS.Clone()
		if len(tlsConf.NextProtos) == 0 {
			tlsConf.NextProtos = []string{"h2", "http/1.1"}
		}
	}
	return &splitter{
		ln: ln, tls: tlsConf, first: first, idle: cfg.IdleTimeout, maxHeaders: maxHeaders,
		grpc: newConnQueue(ln.Addr()), http: newConnQueue(ln.Addr()),
		log:     log.With().Str("listener", cfg.Name).Logger(),
		sniffed: map[net.Conn]struct{}{},
	}
}

// serve accepts until the listener fails or is closed; it returns the error.
func (s *splitter) serve() error {
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // e.g. EMFILE reported as temporary
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(c) {
			_ = c.Close()
			return net.ErrClosed
		}
		go s.handle(c)
	}
}

// track registers a connection being classified; false once closed.
func (s *splitter) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sniffed[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *splitter) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.sniffed, c)
	s.mu.Unlock()
	s.wg.Done()
}

// close stops accepting, closes the connections still being classified and waits
// for their goroutines; the queues are closed by their servers' shutdown.
func (s *splitter) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.sniffed {
		_ = c.Close()
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	s.wg.Wait()
}

// handle classifies one connection and hands it over.
func (s *splitter) handle(raw net.Conn) {
	defer s.untrack(raw)
	_ = raw.SetDeadline(time.Now().Add(s.first))
	conn := raw
	var state *tls.ConnectionState
	if s.tls != nil {
		tc := tls.Server(raw, s.tls)
		hctx, cancel := context.WithTimeout(context.Background(), s.first)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			s.handshakeFailed(raw, err)
			_ = raw.Close()
			return
		}
		st := tc.ConnectionState()
		conn, state = tc, &st
		if st.NegotiatedProtocol != "h2" { // HTTP/1.x over TLS: nothing to look at
			_ = raw.SetDeadline(time.Time{})
			s.http.push(&splitConn{Conn: tc, tlsState: state})
			return
		}
	}
	sn := sniffer{conn: conn, raw: raw, idle: s.idle, limit: s.maxHeaders + 64<<10}
	r := sn.run()
	if r == routeClose {
		_ = conn.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	sc := sn.handOver(conn, state)
	if r == routeGRPC {
		s.grpc.push(sc)
		return
	}
	s.http.push(sc)
}

// handshakeFailed logs a failed TLS handshake at debug level and, when the client
// spoke plain HTTP, answers as net/http's TLS server does.
func (s *splitter) handshakeFailed(raw net.Conn, err error) {
	var re tls.RecordHeaderError
	if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		s.log.Debug().Str("remote", raw.RemoteAddr().String()).Msg("TLS handshake error: client sent an HTTP request to an HTTPS server")
		return
	}
	s.log.Debug().Str("remote", raw.RemoteAddr().String()).Err(err).Msg("TLS handshake error")
}

// looksLikeHTTP reports whether a TLS record header is the start of an HTTP/1.x
// request (net/http's check).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// sniffer reads the start of a connection until it knows where it goes. Everything
// read stays in buf (minus the frames it answered or removed) for the chosen server.
type sniffer struct {
	conn    net.Conn // what to read from and write to (the TLS connection, if any)
	raw     net.Conn // what deadlines are set on
	idle    time.Duration
	limit   int
	buf     []byte
	h2      bool
	ackSeen bool // the client's acknowledgement of emptySettings was removed from buf
	// boundary is where the frame the sniffer looked at last starts (HTTP/2): the
	// bytes after it may end in the middle of a frame
	boundary int
}

// handOver returns the connection the chosen server reads from conn: the bytes
// the sniffer read first, then the rest of the connection. When the client's
// acknowledgement of emptySettings was not among the frames the sniffer looked at,
// it may be among the bytes read after them, or still to come: the returned
// connection drops it wherever it is.
func (s *sniffer) handOver(conn net.Conn, state *tls.ConnectionState) *splitConn {
	sc := &splitConn{Conn: conn, pending: s.buf, tlsState: state}
	if s.h2 && !s.ackSeen {
		sc.dropAck = true
		// the frames the sniffer looked at, then the rest filtered (a new array:
		// the bytes before the boundary are kept as they are)
		sc.pending = slices.Concat(s.buf[:s.boundary], sc.filter(s.buf[s.boundary:]))
	}
	return sc
}

// fill reads until buf holds at least n bytes (or the limit is reached).
func (s *sniffer) fill(n int) error {
	if n > s.limit {
		return errTooLarge
	}
	for len(s.buf) < n {
		if cap(s.buf)-len(s.buf) < 512 {
			s.buf = append(s.buf, make([]byte, max(4096, n-len(s.buf)))...)[:len(s.buf)]
		}
		m, err := s.conn.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+m]
		if err != nil && len(s.buf) < n {
			return err
		}
	}
	return nil
}

var errTooLarge = errors.New("too much sent before the first request")

// run decides the route.
func (s *sniffer) run() route {
	s.buf = make([]byte, 0, 4096)
	// The preface, compared byte by byte: HTTP/1.x requests may be shorter than it.
	for len(s.buf) < len(h2Preface) {
		before := len(s.buf)
		if err := s.fill(before + 1); err != nil {
			if len(s.buf) > 0 && !strings.HasPrefix(h2Preface, string(s.buf)) {
				return routeHTTP
			}
			return routeClose
		}
		n := min(len(s.buf), len(h2Preface))
		if string(s.buf[:n]) != h2Preface[:n] {
			return routeHTTP
		}
	}
	s.h2 = true
	if _, err := s.conn.Write(emptySettings); err != nil {
		return routeClose
	}
	// Waiting for the first request of an HTTP/2 connection is waiting on an idle
	// connection: bounded by the idle timeout, as the servers bound it.
	if s.idle > 0 {
		_ = s.raw.SetDeadline(time.Now().Add(s.idle))
	} else {
		_ = s.raw.SetDeadline(time.Time{})
	}
	pos := len(h2Preface)
	for {
		s.boundary = pos
		if err := s.fill(pos + frameHeaderLen); err != nil {
			return s.failed(err)
		}
		length := int(s.buf[pos])<<16 | int(s.buf[pos+1])<<8 | int(s.buf[pos+2])
		typ, flags := s.buf[pos+3], s.buf[pos+4]
		if length > maxInitialFrame {
			return routeHTTP // the server answers FRAME_SIZE_ERROR
		}
		end := pos + frameHeaderLen + length
		if err := s.fill(end); err != nil {
			return s.failed(err)
		}
		switch typ {
		case frameSettings:
			if flags&flagAck != 0 && length == 0 && !s.ackSeen {
				s.ackSeen = true
				s.buf = append(s.buf[:pos], s.buf[end:]...)
				continue
			}
		case framePing:
			if flags&flagAck == 0 && length == 8 {
				// answered here and removed: the client may be waiting for it
				ack := append([]byte{0, 0, 8, framePing, flagAck, 0, 0, 0, 0}, s.buf[pos+frameHeaderLen:end]...)
				if _, err := s.conn.Write(ack); err != nil {
					return routeClose
				}
				s.buf = append(s.buf[:pos], s.buf[end:]...)
				continue
			}
			return routeHTTP
		case framePriority, frameWindowUpdate:
		case frameHeaders:
			return s.headers(pos)
		default: // DATA, RST_STREAM, GOAWAY, ... before any request: the server's business
			return routeHTTP
		}
		pos = end
	}
}

// failed maps a read failure while waiting for HTTP/2 frames: a connection that
// sent too much is the HTTP server's to refuse, one that went away or timed out is
// closed.
func (s *sniffer) failed(err error) route {
	if errors.Is(err, errTooLarge) {
		return routeHTTP
	}
	return routeClose
}

// headers reads the header block starting with the HEADERS frame at pos (and its
// CONTINUATION frames) and routes by its Content-Type.
func (s *sniffer) headers(pos int) route {
	var block []byte
	stream := binary.BigEndian.Uint32(s.buf[pos+5:]) & 0x7fffffff
	first := true
	for {
		length := int(s.buf[pos])<<16 | int(s.buf[pos+1])<<8 | int(s.buf[pos+2])
		typ, flags := s.buf[pos+3], s.buf[pos+4]
		if binary.BigEndian.Uint32(s.buf[pos+5:])&0x7fffffff != stream || (!first && typ != frameContinuation) {
			return routeHTTP
		}
		payload := s.buf[pos+frameHeaderLen : pos+frameHeaderLen+length]
		if first {
			if flags&flagPadded != 0 {
				if len(payload) < 1 || int(payload[0]) >= len(payload) {
					return routeHTTP
				}
				payload = payload[1 : len(payload)-int(payload[0])]
			}
			if flags&flagPriority != 0 {
				if len(payload) < 5 {
					return routeHTTP
				}
				payload = payload[5:]
			}
		}
		block = append(block, payload...)
		if len(block) > s.maxHeaderBlock() {
			return routeHTTP
		}
		if flags&flagEndHeaders != 0 {
			break
		}
		first = false
		pos += frameHeaderLen + length
		if err := s.fill(pos + frameHeaderLen); err != nil {
			return s.failed(err)
		}
		next := int(s.buf[pos])<<16 | int(s.buf[pos+1])<<8 | int(s.buf[pos+2])
		if next > maxInitialFrame {
			return routeHTTP
		}
		if err := s.fill(pos + frameHeaderLen + next); err != nil {
			return s.failed(err)
		}
	}
	var contentType string
	contentTypes := 0
	proxied := false
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == "content-type" {
			contentType = f.Value
			contentTypes++
		}
		proxied = proxied || proxyHeader(f.Name)
	})
	dec.SetMaxStringLength(s.maxHeaderBlock())
	if _, err := dec.Write(block); err != nil || dec.Close() != nil {
		return routeHTTP // the server reports the compression error
	}
	// a request with several Content-Types is read differently by different
	// parsers (the first one or the last one): net/http, which serves every
	// protocol, gets it
	if contentTypes == 1 && isGRPCProto(contentType) && !proxied {
		return routeGRPC
	}
	return routeHTTP
}

// proxyHeader reports whether a request header is one that proxies add. A proxy
// may pool requests of many clients, gRPC and not, on one HTTP/2 connection, so
// its connections go to net/http, which serves every protocol on any connection.
func proxyHeader(name string) bool {
	switch name {
	case "forwarded", "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "x-forwarded-client-cert":
		return true
	}
	return strings.HasPrefix(name, "x-envoy-") || strings.HasPrefix(name, "l5d-")
}

func (s *sniffer) maxHeaderBlock() int { return s.limit }

// splitConn is a connection handed to a server: the bytes the sniffer read come
// first, then the connection's own, without the client's acknowledgement of the
// sniffer's SETTINGS if it had not arrived yet. tlsState is the TLS state of a
// connection whose TLS the splitter terminated (it deliberately has no
// ConnectionState method: net/http would then not serve it as HTTP/2; see
// withTLSState).
type splitConn struct {
	net.Conn
	tlsState *tls.ConnectionState

	pending []byte
	dropAck bool
	// the frame parser of dropAck: payload bytes of the current frame still to pass,
	// and a frame header split across reads
	rest    int
	hdr     [frameHeaderLen]byte
	hdrLen  int
	scratch []byte
}

// Read returns the replayed bytes first.
func (c *splitConn) Read(p []byte) (int, error) {
	for {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.pending = nil
			}
			return n, nil
		}
		if !c.dropAck {
			return c.Conn.Read(p)
		}
		if cap(c.scratch) < len(p) {
			c.scratch = make([]byte, len(p))
		}
		n, err := c.Conn.Read(c.scratch[:len(p)])
		c.pending = c.filter(c.scratch[:n])
		if err != nil {
			if len(c.pending) > 0 {
				nn := copy(p, c.pending)
				c.pending = c.pending[nn:]
				return nn, err
			}
			return 0, err
		}
	}
}

// filter removes the first SETTINGS acknowledgement from the stream of frames; b is
// the next chunk read. It returns what to pass on.
func (c *splitConn) filter(b []byte) []byte {
	var out []byte
	for len(b) > 0 && c.dropAck {
		if c.rest > 0 {
			n := min(c.rest, len(b))
			out = append(out, b[:n]...)
			b, c.rest = b[n:], c.rest-n
			continue
		}
		n := copy(c.hdr[c.hdrLen:], b)
		c.hdrLen += n
		b = b[n:]
		if c.hdrLen < frameHeaderLen {
			break // the rest of the header comes with the next read
		}
		c.hdrLen = 0
		length := int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		if c.hdr[3] == frameSettings && c.hdr[4]&flagAck != 0 && length == 0 {
			c.dropAck, c.scratch = false, nil
			continue
		}
		out = append(out, c.hdr[:]...)
		c.rest = length
	}
	if !c.dropAck && c.hdrLen > 0 { // cannot happen: the drop completes a header
		out = append(out, c.hdr[:c.hdrLen]...)
		c.hdrLen = 0
	}
	return append(out, b...)
}

// tlsStateKey is the context key of the TLS state of a connection the splitter
// terminated.
type tlsStateKey struct{}

// connTLSContext is the http.Server ConnContext of split listeners.
func connTLSContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*splitConn); ok && sc.tlsState != nil {
		return context.WithValue(ctx, tlsStateKey{}, sc.tlsState)
	}
	return ctx
}

// withTLSState sets Request.TLS of requests that arrived on a connection the
// splitter terminated TLS for (net/http serves them as plaintext HTTP/2).
func withTLSState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
				r.TLS = st
			}
		}
		next.ServeHTTP(w, r)
	})
}
