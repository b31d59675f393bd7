package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// rawConn is a minimal HTTP/1.1 keep-alive client for one connection, in the spirit of
// wrk: the request is written as pre-encoded bytes and the response is parsed in
// place (status line, Content-Length or chunked body, ETag), without allocating per
// request. It talks only to the server under test; anything it does not understand is
// an error.
type rawConn struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
	body    []byte // body of the last response, reused
	etag    []byte // ETag of the last response, reused
}

// newRawConn returns a client for addr (host:port); it dials on first use.
func newRawConn(addr string, timeout time.Duration) *rawConn {
	return &rawConn{addr: addr, timeout: timeout}
}

// rawRequest pre-encodes a POST request with a JSON body.
func rawRequest(addr, path, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, addr, len(body))
	b.WriteString(body)
	return b.Bytes()
}

// do sends req and reads the response. The returned body and ETag are valid until the
// next call. On any error the connection is closed (the next call redials).
func (c *rawConn) do(req []byte) (status int, body, etag []byte, err error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return 0, nil, nil, err
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 64<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	if c.timeout > 0 {
		if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
			c.close()
			return 0, nil, nil, err
		}
	}
	status, closeAfter, err := c.exchange(req)
	if err != nil || closeAfter {
		c.close()
	}
	if err != nil {
		return 0, nil, nil, err
	}
	return status, c.body, c.etag, nil
}

// close closes the connection, if any.
func (c *rawConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// errMalformed reports a response the client does not understand.
var errMalformed = errors.New("malformed HTTP response")

// exchange writes req and parses one response into c.body and c.etag.
func (c *rawConn) exchange(req []byte) (status int, closeAfter bool, err error) {
	if _, err := c.conn.Write(req); err != nil {
		return 0, false, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, ok := parseUint(line[9:12], 10)
	if !ok {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	contentLength, chunked := -1, false
	c.etag = c.etag[:0]
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return 0, false, fmt.Errorf("%w: header %q", errMalformed, line)
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseUint(value, 10)
			if !ok {
				return 0, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(value, []byte("chunked")) {
				return 0, false, fmt.Errorf("%w: Transfer-Encoding %q", errMalformed, value)
			}
			chunked = true
		case bytes.EqualFold(name, []byte("Connection")):
			closeAfter = bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("ETag")):
			c.etag = append(c.etag, value...)
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		err = c.readChunked()
	case contentLength >= 0:
		err = c.readN(contentLength)
	case status == 204 || status == 304 || status/100 == 1:
	default:
		return 0, false, fmt.Errorf("%w: no Content-Length in a %d response", errMalformed, status)
	}
	return status, closeAfter, err
}

// readN appends n body bytes to c.body.
func (c *rawConn) readN(n int) error {
	start := len(c.body)
	if cap(c.body) < start+n {
		grown := make([]byte, start, start+n)
		copy(grown, c.body)
		c.body = grown
	}
	c.body = c.body[:start+n]
	_, err := io.ReadFull(c.br, c.body[start:])
	return err
}

// readChunked reads a chunked body (and its trailers) into c.body.
func (c *rawConn) readChunked() error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, ok := parseUint(bytes.TrimSpace(line), 16)
		if !ok {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if size == 0 {
			for { // trailers, then the final empty line
				line, err := c.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if err := c.readN(size); err != nil {
			return err
		}
		crlf, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return fmt.Errorf("%w: chunk not followed by CRLF", errMalformed)
		}
	}
}

// parseUint parses a non-empty decimal or hexadecimal number of at most 9 digits
// without allocating.
func parseUint(b []byte, base int) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, ch := range b {
		var d int
		switch {
		case ch >= '0' && ch <= '9':
			d = int(ch - '0')
		case base == 16 && ch >= 'a' && ch <= 'f':
			d = int(ch-'a') + 10
		case base == 16 && ch >= 'A' && ch <= 'F':
			d = int(ch-'A') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}
