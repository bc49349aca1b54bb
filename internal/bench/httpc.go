package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// rawHTTP is a minimal HTTP/1.1 keep-alive client for one connection: it
// writes a request from reused buffers and reads the answer (Content-Length,
// chunked, or until close) into a reused body buffer. net/http costs more CPU
// per request than the server we measure; this keeps the load generator
// light. It is not safe for concurrent use.
type rawHTTP struct {
	addr    string // host:port to dial
	host    string // Host header
	timeout time.Duration

	mu     sync.Mutex // guards c against the context closer
	c      net.Conn
	closed bool
	br     *bufio.Reader
	req    []byte
	body   []byte
	stop   func() bool
}

const maxBody = 8 << 20

var errBodyTooLarge = errors.New("answer body too large")

func newRawHTTP(ctx context.Context, addr, host string, timeout time.Duration) *rawHTTP {
	h := &rawHTTP{addr: addr, host: host, timeout: timeout}
	h.stop = context.AfterFunc(ctx, h.Close)
	return h
}

// Close closes the connection; later calls to Do fail.
func (h *rawHTTP) Close() {
	h.mu.Lock()
	h.closed = true
	if h.c != nil {
		h.c.Close()
		h.c = nil
	}
	h.mu.Unlock()
}

// release frees the context hook and the connection.
func (h *rawHTTP) release() {
	if h.stop != nil {
		h.stop()
	}
	h.Close()
}

func (h *rawHTTP) drop() {
	h.mu.Lock()
	if h.c != nil {
		h.c.Close()
		h.c = nil
	}
	h.mu.Unlock()
}

func (h *rawHTTP) conn() (net.Conn, bool, error) {
	h.mu.Lock()
	c, closed := h.c, h.closed
	h.mu.Unlock()
	if closed {
		return nil, false, net.ErrClosed
	}
	if c != nil {
		return c, true, nil
	}
	c, err := net.DialTimeout("tcp", h.addr, h.timeout)
	if err != nil {
		return nil, false, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		c.Close()
		return nil, false, net.ErrClosed
	}
	h.c = c
	h.mu.Unlock()
	if h.br == nil {
		h.br = bufio.NewReaderSize(c, 4096)
	} else {
		h.br.Reset(c)
	}
	return c, false, nil
}

// Do sends one request. path is the request target ("/api/..."); auth, if
// not empty, is sent as "Authorization: Bearer auth"; body, if not nil, as
// JSON. The returned body is valid until the next call.
func (h *rawHTTP) Do(method string, path []byte, auth string, body []byte) (status int, resp []byte, err error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := h.conn()
		if err != nil {
			return 0, nil, err
		}
		status, resp, got, err := h.roundTrip(c, method, path, auth, body)
		if err == nil {
			return status, resp, nil
		}
		h.drop()
		// A kept-alive connection the server closed while idle fails before
		// any answer byte: retry once on a fresh one, but only when nothing
		// could have been processed twice (GET).
		if reused && !got && attempt == 0 && method == "GET" {
			continue
		}
		return 0, nil, err
	}
}

func (h *rawHTTP) roundTrip(c net.Conn, method string, path []byte, auth string, body []byte) (status int, resp []byte, got bool, err error) {
	b := h.req[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, h.host...)
	b = append(b, "\r\nUser-Agent: roomcast-bench\r\n"...)
	if auth != "" {
		b = append(b, "Authorization: Bearer "...)
		b = append(b, auth...)
		b = append(b, "\r\n"...)
	}
	if body != nil {
		b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	h.req = b
	if h.timeout > 0 {
		c.SetDeadline(time.Now().Add(h.timeout))
	}
	if _, err := c.Write(b); err != nil {
		return 0, nil, false, err
	}
	status, resp, got, keep, err := h.readResponse(method)
	if err == nil && !keep {
		h.drop()
	}
	return status, resp, got, err
}

func (h *rawHTTP) readResponse(method string) (status int, body []byte, got, keep bool, err error) {
	br := h.br
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, nil, len(line) > 0, false, err
	}
	got = true
	if len(line) < 12 || string(line[:5]) != "HTTP/" {
		return 0, nil, got, false, fmt.Errorf("malformed status line %q", trimCRLF(line))
	}
	st, ok := parseUint(line[9:12])
	if !ok {
		return 0, nil, got, false, fmt.Errorf("malformed status line %q", trimCRLF(line))
	}
	status = int(st)
	hd, err := readHeaders(br)
	if err != nil {
		return 0, nil, got, false, err
	}
	keep = string(line[:8]) == "HTTP/1.1" && !hd.close
	b := h.body[:0]
	switch {
	case method == "HEAD" || status == 204 || status == 304 || (status >= 100 && status < 200):
	case hd.chunked:
		b, err = readChunked(br, b)
	case hd.length >= 0:
		if hd.length > maxBody {
			return 0, nil, got, false, errBodyTooLarge
		}
		b, err = readN(br, b, int(hd.length))
	default:
		keep = false
		b, err = readToEOF(br, b)
	}
	if err != nil {
		return 0, nil, got, false, err
	}
	h.body = b
	return status, b, got, keep, nil
}

// respHeaders is what readResponse needs of a response's headers.
type respHeaders struct {
	length  int64 // Content-Length; -1 when absent
	chunked bool
	close   bool // Connection: close
}

// readHeaders reads the header lines up to the empty one.
func readHeaders(br *bufio.Reader) (respHeaders, error) {
	hd := respHeaders{length: -1}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return hd, err
		}
		l := trimCRLF(line)
		if len(l) == 0 {
			return hd, nil
		}
		colon := indexByte(l, ':')
		if colon <= 0 {
			continue
		}
		k, v := l[:colon], trimSpace(l[colon+1:])
		switch {
		case equalFold(k, "content-length"):
			n, ok := parseUint(v)
			if !ok || len(v) > 12 {
				return hd, errors.New("malformed Content-Length")
			}
			hd.length = int64(n)
		case equalFold(k, "transfer-encoding"):
			hd.chunked = containsFold(v, "chunked")
		case equalFold(k, "connection"):
			hd.close = hd.close || containsFold(v, "close")
		}
	}
}

// readChunked appends a chunked body to b, up to maxBody.
func readChunked(br *bufio.Reader, b []byte) ([]byte, error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return b, err
		}
		n, err := strconv.ParseUint(string(hexPrefix(trimCRLF(line))), 16, 32)
		if err != nil {
			return b, errors.New("malformed chunk size")
		}
		if n == 0 {
			// Trailers up to the empty line.
			for {
				line, err = br.ReadSlice('\n')
				if err != nil {
					return b, err
				}
				if len(trimCRLF(line)) == 0 {
					return b, nil
				}
			}
		}
		if len(b)+int(n) > maxBody {
			return b, errBodyTooLarge
		}
		if b, err = readN(br, b, int(n)); err != nil {
			return b, err
		}
		if _, err := br.Discard(2); err != nil {
			return b, err
		}
	}
}

// readToEOF appends a body that ends with the connection to b, up to
// maxBody.
func readToEOF(br *bufio.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			if len(b) >= maxBody {
				return b, errBodyTooLarge
			}
			b = append(b, 0)[:len(b)]
		}
		n, err := br.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func readN(r io.Reader, b []byte, n int) ([]byte, error) {
	start := len(b)
	if cap(b)-start < n {
		nb := make([]byte, start, start+n+512)
		copy(nb, b)
		b = nb
	}
	b = b[:start+n]
	_, err := io.ReadFull(r, b[start:])
	return b, err
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func hexPrefix(b []byte) []byte {
	for i, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return b[:i]
		}
	}
	return b
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if equalFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}
