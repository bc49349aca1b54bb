// Package keepalive serves the hottest request of the HTTP API — a poll
// repeated on a keep-alive connection — without net/http's per-request
// machinery (issue 14: request parsing, the response writer, the
// background read and the flushes were most of a poll's CPU).
//
// A connection enters only after net/http has served a request that the
// caller chose to hand over (Take, from inside its handler). From then on a
// Conn reads each request head itself and answers it through a Handler if
// the head is a plain HTTP/1.1 GET the Server fully understands. Anything
// else — another method, a body, an upgrade, Connection: close, an unusual
// header, a head larger than MaxHead, a request the Handler declines — goes
// back to net/http through the Listener with the bytes already read, so
// net/http applies its own rules and answers it exactly as it would have;
// the Server never answers what it does not understand.
package keepalive

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Request is a parsed request head.
type Request struct {
	Path, Query   string // the raw (undecoded) target, split at '?'
	Authorization string // the first Authorization header's value
	RemoteAddr    string
}

// Handler answers r by appending the response body to dst; ok false hands
// the connection (with r unread) back to net/http, which answers r.
type Handler func(ctx context.Context, r *Request, dst []byte) (body []byte, ok bool)

// Config tunes a Server. Zero values mean the defaults.
type Config struct {
	// Header is the block of header lines ("Name: value\r\n"…) of every
	// answer, besides Content-Length and Date.
	Header string
	// InternalError is the body of the 500 answer to a Handler's panic.
	InternalError string
	// IdleTimeout bounds the wait for a request and its answer's write
	// (default 120s); HeaderTimeout the rest of a head once it started
	// (default 10s). MaxHead bounds a head read here (default 16 KiB).
	IdleTimeout, HeaderTimeout time.Duration
	MaxHead                    int
	Log                        *slog.Logger
}

// Server tracks the connections it serves, for Shutdown.
type Server struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	shut  atomic.Bool // set under mu: no Take after Shutdown starts waiting
	conns map[*Conn]struct{}
	wg    sync.WaitGroup

	takes, served, handed atomic.Uint64

	// The hand-back path to net/http, through the Listener.
	back      chan net.Conn
	lnDone    chan struct{}
	lnOnce    sync.Once
	listening atomic.Bool
}

// NewServer returns a Server; it hands connections back to net/http through
// its Listener.
func NewServer(cfg Config) *Server {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 120 * time.Second
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 10 * time.Second
	}
	if cfg.MaxHead <= 0 {
		cfg.MaxHead = 16 << 10
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, ctx: ctx, cancel: cancel, conns: make(map[*Conn]struct{}),
		back: make(chan net.Conn), lnDone: make(chan struct{})}
}

// Stats are a Server's counts.
type Stats struct {
	Conns     int    // connections served now
	Takes     uint64 // connections taken from net/http (each with its first answer)
	Answers   uint64 // answers written (or being written), Take's first ones included
	HandBacks uint64 // requests handed back to net/http
}

// Stats returns the Server's counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return Stats{Conns: n, Takes: s.takes.Load(), Answers: s.served.Load(), HandBacks: s.handed.Load()}
}

// Buffers: a connection's read buffer starts at readBuf (and grows to
// MaxHead only for a large head); answers are built in pooled buffers, of
// which those up to maxPooled are reused.
const (
	readBuf   = 4 << 10
	maxPooled = 64 << 10
)

var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Conn is a connection the Server took; Serve runs it.
type Conn struct {
	s    *Server
	nc   net.Conn
	addr string
	rbuf []byte // bytes read and not yet answered, from a request's start
	hdr  []byte // an answer's status line and headers
	vec  net.Buffers
	pair [2][]byte // vec's backing array: a writev without an allocation
}

// Take answers r with body itself on r's connection, which it takes from
// net/http, if r is a keep-alive HTTP/1.1 request without a body; the
// caller then runs the returned Conn's Serve. taken false: nothing was
// done, answer r as usual. taken true with a nil Conn: the connection
// failed and is closed.
func (s *Server) Take(w http.ResponseWriter, r *http.Request, body []byte) (c *Conn, taken bool) {
	if r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close || r.TLS != nil || r.ContentLength != 0 ||
		len(r.TransferEncoding) > 0 || r.Header.Get("Upgrade") != "" {
		return nil, false
	}
	s.mu.Lock()
	if s.shut.Load() {
		s.mu.Unlock()
		return nil, false
	}
	s.wg.Add(1)
	s.mu.Unlock()
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.wg.Done()
		return nil, false
	}
	c = &Conn{s: s, addr: r.RemoteAddr, rbuf: make([]byte, 0, readBuf)}
	if n := brw.Reader.Buffered(); n > 0 { // a pipelined next request
		b, _ := brw.Reader.Peek(n)
		c.rbuf = append(c.rbuf, b...)
	}
	if rc, ok := nc.(*replayConn); ok { // handed back earlier: unwrap
		rc.mu.Lock()
		c.rbuf = append(c.rbuf, rc.pending...)
		rc.pending = nil
		rc.mu.Unlock()
		nc = rc.Conn
	}
	c.nc = nc
	s.takes.Add(1)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if err := c.answer(body); err != nil {
		c.close()
		return nil, true
	}
	return c, true
}

// Serve answers the connection's requests with h until it closes or is
// handed back.
func (c *Conn) Serve(h Handler) {
	defer func() {
		if v := recover(); v != nil {
			c.s.cfg.Log.Error("keepalive: panic", "panic", v)
			c.hdr = c.status(c.hdr[:0], "500 Internal Server Error", time.Now(), len(c.s.cfg.InternalError))
			_, _ = c.nc.Write(append(c.hdr, c.s.cfg.InternalError...))
			c.close()
		}
	}()
	r := Request{RemoteAddr: c.addr}
	for {
		end, ok := c.readHead(time.Now())
		if !ok {
			return
		}
		if !parseHead(c.rbuf[:end], &r) {
			c.handBack()
			return
		}
		// Answers come from a shared pool, so an idle connection holds
		// no more than its read buffer, however large its last answer.
		bp := bodies.Get().(*[]byte)
		body, ok := h(c.s.ctx, &r, (*bp)[:0])
		if !ok {
			bodies.Put(bp)
			c.handBack()
			return
		}
		err := c.answer(body)
		if cap(body) <= maxPooled {
			*bp = body[:0]
			bodies.Put(bp)
		}
		if err != nil {
			c.close()
			return
		}
		c.rbuf = c.rbuf[:copy(c.rbuf, c.rbuf[end:])]
		if len(c.rbuf) == 0 && cap(c.rbuf) > readBuf { // after a large head
			c.rbuf = make([]byte, 0, readBuf)
		}
	}
}

// readHead reads until rbuf holds a whole head and returns its length; ok
// false: the connection is closed or handed back.
func (c *Conn) readHead(now time.Time) (end int, ok bool) {
	s := c.s
	// One deadline covers the wait, the head and the answer's write.
	if err := c.nc.SetDeadline(now.Add(s.cfg.IdleTimeout)); err != nil {
		c.close()
		return 0, false
	}
	var headStart time.Time
	for {
		if s.shut.Load() { // after the deadline is set: Shutdown's poke is not lost
			c.close()
			return 0, false
		}
		if end := headEnd(c.rbuf); end > 0 {
			return end, true
		}
		if len(c.rbuf) >= s.cfg.MaxHead {
			c.handBack() // net/http has the larger limit and the 431
			return 0, false
		}
		if len(c.rbuf) > 0 && headStart.IsZero() {
			headStart = time.Now()
			if err := c.nc.SetReadDeadline(headStart.Add(s.cfg.HeaderTimeout)); err != nil {
				c.close()
				return 0, false
			}
		}
		if len(c.rbuf) == cap(c.rbuf) {
			c.rbuf = append(c.rbuf, make([]byte, min(cap(c.rbuf), s.cfg.MaxHead-len(c.rbuf)))...)[:len(c.rbuf)]
		}
		n, err := c.nc.Read(c.rbuf[len(c.rbuf):min(cap(c.rbuf), s.cfg.MaxHead)])
		c.rbuf = c.rbuf[:len(c.rbuf)+n]
		if err != nil { // closed by the client, timed out, or shut down
			c.close()
			return 0, false
		}
	}
}

// headEnd is the length of the head at b's start (through its first empty
// line, "\r\n" or a bare "\n" as net/http also reads it), 0 while incomplete.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}

// answer writes a 200 answer with body (one writev).
func (c *Conn) answer(body []byte) error {
	c.hdr = c.status(c.hdr[:0], "200 OK", time.Now(), len(body))
	c.s.served.Add(1) // before the write: a client that has the answer sees it counted
	c.pair = [2][]byte{c.hdr, body}
	c.vec = c.pair[:]
	_, err := c.vec.WriteTo(c.nc) // consumes vec
	c.pair = [2][]byte{}          // body goes back to its pool: hold no reference
	return err
}

// status appends a status line and the headers for a body of n bytes.
func (c *Conn) status(b []byte, status string, now time.Time, n int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = append(b, status...)
	b = append(b, "\r\n"...)
	b = append(b, c.s.cfg.Header...)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, "\r\nDate: "...)
	b = appendDate(b, now)
	return append(b, "\r\n\r\n"...)
}

// handBack gives the connection and its unanswered bytes to net/http.
func (c *Conn) handBack() {
	c.s.handed.Add(1)
	c.forget()
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		_ = c.nc.Close()
		return
	}
	c.s.handBack(c.nc, c.rbuf)
}

func (c *Conn) close() {
	c.forget()
	_ = c.nc.Close()
}

func (c *Conn) forget() {
	c.s.mu.Lock()
	_, ok := c.s.conns[c]
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	if ok {
		c.s.wg.Done()
	}
}

// Shutdown ends every connection at its next request (at once when idle)
// and waits for them; when ctx ends first it closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shut.Store(true)
	now := time.Now()
	for c := range s.conns {
		_ = c.nc.SetReadDeadline(now)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { // ends when the last connection does
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return errors.Join(errors.New("keepalive: shutdown: connections closed"), ctx.Err())
}

// appendDate appends now as an HTTP date, formatted once a second.
func appendDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return append(b, d.s...)
	}
	d := &cachedDate{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return append(b, d.s...)
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]
