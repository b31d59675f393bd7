package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// chunkConn is a net.Conn reading data in reads of at most chunk bytes, then EOF;
// writes are kept.
type chunkConn struct {
	net.Conn
	data    []byte
	chunk   int
	written bytes.Buffer
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}
func (c *chunkConn) Write(p []byte) (int, error)      { return c.written.Write(p) }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }
func (c *chunkConn) Close() error                     { return nil }

// expectedReplay is what the server chosen for an HTTP/2 connection must read: the
// client's frames without the PINGs the sniffer answered before the first request
// and without the first (empty) SETTINGS acknowledgement; rest is the end of the
// input from a frame it does not hold whole (passed on as it arrives, or, for the
// bytes of a frame header, once the header is complete).
func expectedReplay(in []byte) (out, rest []byte) {
	out = append(out, in[:len(h2Preface)]...)
	b := in[len(h2Preface):]
	sniffing, ackDropped := true, false
	for len(b) >= frameHeaderLen {
		length := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		typ, flags := b[3], b[4]
		if len(b) < frameHeaderLen+length {
			return out, b
		}
		frame := b[:frameHeaderLen+length]
		b = b[len(frame):]
		if sniffing {
			switch {
			case length > maxInitialFrame:
				sniffing = false
			case typ == framePing && flags&flagAck == 0 && length == 8:
				continue // answered and removed
			case typ == frameSettings, typ == framePriority, typ == frameWindowUpdate:
			default:
				sniffing = false
			}
		}
		if !ackDropped && typ == frameSettings && flags&flagAck != 0 && length == 0 {
			ackDropped = true
			continue
		}
		out = append(out, frame...)
	}
	return out, b
}

// FuzzSniffer: whatever a client sends first, the sniffer does not panic, the
// server it picks reads exactly what the client sent (HTTP/1.x unchanged; HTTP/2
// without the PINGs answered and the acknowledgement of the sniffer's SETTINGS),
// and a connection routed to grpc-go starts, for x/net/http2's own parser, with a
// request whose Content-Type is gRPC with the protobuf codec, from no proxy.
func FuzzSniffer(f *testing.F) {
	frame := func(typ, flags byte, stream uint32, payload []byte) []byte {
		h := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags,
			byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
		return append(h, payload...)
	}
	block := func(fields ...string) []byte {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return b.Bytes()
	}
	grpcReq := block(":method", "POST", ":scheme", "http", ":path", "/a.B/C", ":authority", "x", "content-type", "application/grpc")
	settings := frame(frameSettings, 0, 0, nil)
	ack := frame(frameSettings, flagAck, 0, nil)
	ping := frame(framePing, 0, 0, []byte("12345678"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint16(7))
	f.Add(bytes.Join([][]byte{[]byte(h2Preface), settings, ack, ping, frame(frameHeaders, flagEndHeaders, 1, grpcReq)}, nil), uint16(1))
	f.Add(bytes.Join([][]byte{[]byte(h2Preface), settings, frame(frameHeaders, 0, 1, grpcReq[:5]), frame(frameContinuation, flagEndHeaders, 1, grpcReq[5:]), ack}, nil), uint16(13))
	f.Add(bytes.Join([][]byte{[]byte(h2Preface), settings, frame(frameHeaders, flagEndHeaders|flagPadded, 1, append(append([]byte{3}, grpcReq...), 0, 0, 0))}, nil), uint16(4096))
	f.Add(bytes.Join([][]byte{[]byte(h2Preface), frame(frameHeaders, flagEndHeaders, 1, block(":path", "/x", "content-type", "application/grpc-web"))}, nil), uint16(2))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint16) {
		conn := &chunkConn{data: in, chunk: max(1, int(chunk))}
		sn := sniffer{conn: conn, raw: conn, limit: 64 << 10}
		r := sn.run()
		if r == routeClose {
			return
		}
		got, err := io.ReadAll(sn.handOver(conn, nil))
		if err != nil {
			t.Fatal(err)
		}
		if !sn.h2 {
			if r != routeHTTP || !bytes.Equal(got, in) {
				t.Fatalf("HTTP/1.x: route %d, replayed %q of %q", r, got, in)
			}
			return
		}
		checkH2Replay(t, in, got)
		if r == routeGRPC {
			checkGRPCRequest(t, got)
		}
	})
}

// checkH2Replay checks that got, what the server chosen for an HTTP/2 connection
// read, is the client's input without the frames the sniffer answered or
// removed (expectedReplay).
func checkH2Replay(t *testing.T, in, got []byte) {
	t.Helper()
	want, rest := expectedReplay(in)
	if !bytes.HasPrefix(got, want) || !bytes.HasPrefix(slices.Concat(want, rest), got) {
		t.Fatalf("HTTP/2: replayed\n %x\nwant\n %x (then up to %x)", got, want, rest)
	}
}

// checkGRPCRequest checks that got, what grpc-go reads from a connection routed to
// it, starts, for x/net/http2's own parser, with a request whose Content-Type is
// gRPC with the protobuf codec and without proxy headers, or with something
// x/net/http2 refuses (the stream or the connection).
func checkGRPCRequest(t *testing.T, got []byte) {
	t.Helper()
	fr := http2.NewFramer(io.Discard, bytes.NewReader(got[len(h2Preface):]))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		fm, err := fr.ReadFrame()
		if _, ok := errors.AsType[http2.StreamError](err); ok {
			return // the server refuses the request
		}
		if err != nil {
			if _, ok := errors.AsType[http2.ConnectionError](err); ok || errors.Is(err, http2.ErrFrameTooLarge) {
				return // ... or the connection
			}
			t.Fatalf("routed to grpc-go, but x/net/http2 finds no request: %v", err)
		}
		mh, ok := fm.(*http2.MetaHeadersFrame)
		if !ok {
			continue
		}
		for _, h := range mh.Fields {
			if proxyHeader(h.Name) {
				t.Fatalf("routed to grpc-go with proxy header %q", h.Name)
			}
		}
		if !isGRPCProto(contentType(mh)) {
			t.Fatalf("routed to grpc-go with Content-Type %q", contentType(mh))
		}
		return
	}
}

func contentType(mh *http2.MetaHeadersFrame) string {
	for _, h := range mh.RegularFields() {
		if h.Name == "content-type" {
			return h.Value
		}
	}
	return ""
}
