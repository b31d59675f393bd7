package server

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// ConnLimit caps the connections open at once on the listeners that share it, so
// that one client cannot take every file descriptor of the process (which the
// management port, the flag sources and the other listeners need too). A
// connection over the cap is accepted and closed at once, after an HTTP/1.1 503
// "too many connections" on plaintext HTTP listeners; the refusal is logged at most
// every 10 s with how many were refused. Create it with NewConnLimit.
type ConnLimit struct {
	max     int64
	open    atomic.Int64
	refused atomic.Uint64
	log     zerolog.Logger
	warn    LogThrottle
}

// NewConnLimit returns a cap of n connections (at least 1).
func NewConnLimit(n int, log zerolog.Logger) *ConnLimit {
	return &ConnLimit{max: int64(max(n, 1)), log: log}
}

// Max is the cap.
func (l *ConnLimit) Max() int { return int(l.max) }

// Open is the number of connections open now.
func (l *ConnLimit) Open() int { return int(l.open.Load()) }

// Refused is the number of connections refused so far.
func (l *ConnLimit) Refused() uint64 { return l.refused.Load() }

// Listener wraps ln so that its connections count against the cap; name is the
// listener's, for the log. refusal, if not nil, is written to a refused connection
// before it is closed (an HTTP response on plaintext HTTP listeners; nothing on TLS
// and gRPC listeners, whose clients could not read it).
func (l *ConnLimit) Listener(ln net.Listener, name string, refusal []byte) net.Listener {
	return &limitListener{Listener: ln, l: l, name: name, refusal: refusal}
}

// HTTPRefusal is the response a plaintext HTTP listener writes to a connection over
// the cap.
var HTTPRefusal = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nContent-Length: 21\r\n\r\ntoo many connections\n")

type limitListener struct {
	net.Listener
	l       *ConnLimit
	name    string
	refusal []byte
}

// Accept returns the next connection within the cap; connections over it are
// refused here and never reach the server.
func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l := ln.l
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refused.Add(1)
		if ln.refusal != nil {
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = c.Write(ln.refusal)
		}
		_ = c.Close()
		if log, held := l.warn.Allow(); log {
			l.log.Warn().Str("listener", ln.name).Int64("limit", l.max).Int64("refused_since_last_warning", held).
				Msg("refused a connection: too many open connections (--max-connections; logged at most every 10 s)")
		}
	}
}

// limitConn gives its slot back when closed (once, however often Close is called).
type limitConn struct {
	net.Conn
	l    *ConnLimit
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// DefaultConnLimits splits the process's file-descriptor limit (RLIMIT_NOFILE;
// 0 when unknown) between the connections of the data listeners (evaluation, sync,
// OFREP, sharing one cap) and of the management listener (its own cap, so that
// probes and scrapes still get in while the data listeners are full), keeping a
// reserve for everything else the process opens (listeners, flag files, the file
// watcher, outgoing connections of http, grpc and kubernetes sources): the reserve
// is 64 descriptors or half a small limit, management gets an eighth of the limit
// (4 to 64), and the data listeners the rest, at most 10,000.
func DefaultConnLimits(nofile uint64) (data, management int) {
	const maxData = 10000
	if nofile == 0 || nofile > 1<<30 {
		return maxData, 64
	}
	n := int(nofile)
	management = min(max(n/8, 4), 64)
	reserve := min(64, n/2)
	data = min(maxData, max(n-reserve-management, 1))
	return data, management
}
