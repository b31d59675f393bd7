package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2conn is a raw HTTP/2 prior-knowledge (h2c) client connection that sends streams
// as the attacks need them (headers without a body, hundreds of streams at once) and
// counts how the server ends them. It acknowledges SETTINGS and PING and returns
// flow-control credit for every DATA frame, like a well-behaved client.
type h2conn struct {
	conn   net.Conn
	wmu    sync.Mutex // writes: framer and encoder
	fr     *http2.Framer
	enc    *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32

	ended  atomic.Int64 // streams ended by the server (END_STREAM or RST_STREAM)
	resets atomic.Int64 // of which RST_STREAM
	goaway atomic.Bool
	closed chan struct{}
}

// dialH2 connects and sends the preface and SETTINGS.
func dialH2(addr string) (*h2conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &h2conn{conn: conn, nextID: 1, closed: make(chan struct{})}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		conn.Close()
		return nil, err
	}
	go c.read()
	return c, nil
}

func (c *h2conn) read() {
	defer close(c.closed)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				c.write(func() error { return c.fr.WritePing(true, data) })
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				c.ended.Add(1)
			}
		case *http2.DataFrame:
			if n := uint32(len(f.Data())); n > 0 { //nolint:gosec // G115: an HTTP/2 frame payload is at most 2^24-1 bytes
				id := f.StreamID
				c.write(func() error {
					if err := c.fr.WriteWindowUpdate(0, n); err != nil {
						return err
					}
					return c.fr.WriteWindowUpdate(id, n)
				})
			}
			if f.StreamEnded() {
				c.ended.Add(1)
			}
		case *http2.RSTStreamFrame:
			c.ended.Add(1)
			c.resets.Add(1)
		case *http2.GoAwayFrame:
			c.goaway.Store(true)
		}
	}
}

func (c *h2conn) write(fn func() error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = fn()
}

// open starts a stream: a POST to path with the headers, then body as one DATA frame
// with END_STREAM; with a nil body the stream stays half-sent (no END_STREAM).
func (c *h2conn) open(addr, path string, headers [][2]string, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	id := c.nextID
	c.nextID += 2
	c.hbuf.Reset()
	for _, h := range append([][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", addr}, {":path", path}}, headers...) {
		if err := c.enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}); err != nil {
			return err
		}
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return err
	}
	if body == nil {
		return nil
	}
	return c.fr.WriteData(id, true, body)
}

// isClosed reports whether the server closed the connection.
func (c *h2conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *h2conn) close() { _ = c.conn.Close() }

// connectEnvelope frames a Connect streaming message.
func connectEnvelope(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg))) //nolint:gosec // G115: the attacks' messages are small, far from 4 GiB
	return append(b, msg...)
}

// waitEnded waits until the connections' servers ended at least n streams in total,
// or timeout; it returns the count.
func waitEnded(conns []*h2conn, n int64, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for {
		var total int64
		for _, c := range conns {
			total += c.ended.Load()
		}
		if total >= n || time.Now().After(deadline) {
			return total
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fmtCount(n int64, of int) string { return fmt.Sprintf("%d of %d", n, of) }
