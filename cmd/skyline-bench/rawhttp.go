package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// rawConn is the load generator's lean HTTP/1.1 client, in the manner of
// wrk: one persistent connection, requests written pre-formatted, answers
// read with a minimal parser. It exists so that the server, not
// net/http's client machinery running on the same two cores, is what
// skyline-bench serve measures; -client go keeps api.Client for
// comparison. It understands exactly what skyline serve answers to
// POST /submit (a status line, headers with Content-Length, a body), and
// anything else is an error.
type rawConn struct {
	addr string
	conn net.Conn
	r    *bufio.Reader
	buf  []byte
}

func newRawConn(addr string) *rawConn { return &rawConn{addr: addr} }

// rawRequest formats the POST of body to path, as sent on the wire.
func rawRequest(host, path string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, host, len(body))
	b.Write(body)
	return b.Bytes()
}

// rawRequests formats the POST /submit of each envelope to addr (with
// ?wait=1 when wait is set).
func rawRequests(addr string, wait bool, envs [][]byte) [][]byte {
	path := "/submit"
	if wait {
		path += "?wait=1"
	}
	reqs := make([][]byte, len(envs))
	for i, env := range envs {
		reqs[i] = rawRequest(addr, path, env)
	}
	return reqs
}

// rawSubmitters makes n raw clients of addr sharing the requests reqs.
func rawSubmitters(addr string, reqs [][]byte, n int) []submitter {
	out := make([]submitter, n)
	for i := range out {
		out[i] = &rawSubmitter{newRawConn(addr), reqs}
	}
	return out
}

// do sends a pre-formatted request and returns the status code and body
// of the answer (the body is valid until the next call). A broken
// connection is redialled once on the next call.
func (c *rawConn) do(req []byte) (int, []byte, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
		if err != nil {
			return 0, nil, err
		}
		c.conn, c.r = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	status, body, err := c.roundTrip(req)
	if err != nil {
		c.conn.Close()
		c.conn = nil
	}
	return status, body, err
}

func (c *rawConn) roundTrip(req []byte) (int, []byte, error) {
	if _, err := c.conn.Write(req); err != nil {
		return 0, nil, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length, closing := -1, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, fmt.Errorf("bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 || length > 1<<20 {
				return 0, nil, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closing = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, nil, errors.New("chunked answer: not what skyline serve sends to /submit")
		}
	}
	if length < 0 {
		return 0, nil, errors.New("answer without Content-Length")
	}
	if cap(c.buf) < length {
		c.buf = make([]byte, length)
	}
	body := c.buf[:length]
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	if closing {
		c.conn.Close()
		c.conn = nil
	}
	return status, body, nil
}

func (c *rawConn) close() {
	if c.conn != nil {
		c.conn.Close()
	}
}
