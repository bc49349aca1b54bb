package ws

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// ErrClosed is returned by Send and SendText once the connection is closing
// or closed.
var ErrClosed = errors.New("ws: connection closed")

// ErrSlow is returned by Send and SendText when the connection's write queue
// would exceed Config.QueueBytes; the connection has then been closed with
// code 4008 "slow consumer".
var ErrSlow = errors.New("ws: slow consumer")

type connState uint8

const (
	stateOpen    connState = iota
	stateClosing           // close frame queued or sent; waiting for flush and the peer
	stateClosed            // torn down: deregistered, socket closed
)

// closeCause classifies closes for Stats.
type closeCause uint8

const (
	causeServer closeCause = iota
	causeClient
	causeProtocol
	causeSlow
	causeHeartbeat
)

// closeHow says how far closeLocked goes.
type closeHow uint8

const (
	closeGraceful closeHow = iota // close frame, flush, FIN, wait for the peer (bounded)
	closeFlush                    // close frame, one non-blocking flush attempt, then tear down
	closeHard                     // tear down now
)

// epoll interest bits (translated by the poller).
const (
	interestRead  = 1
	interestWrite = 2
)

// Conn is one upgraded WebSocket connection. Its methods are safe for
// concurrent use. See the package comment for which goroutine owns which
// field.
type Conn struct {
	s          *Server
	nc         net.Conn
	rc         syscall.RawConn
	fd         int    // for the fd table and epoll_ctl only; I/O goes through rc
	gen        uint32 // tells this Conn from an earlier one with the same fd
	compressed bool
	remote     net.Addr
	// subprotocol is the negotiated Sec-WebSocket-Protocol ("" for none).
	subprotocol string

	value    atomic.Pointer[any]
	lastRead atomic.Int64 // Server clock at the last successful read
	started  atomic.Bool  // set by Start; the poller reads only after it
	closing  atomic.Bool  // state != stateOpen; lets the reader skip locking
	deadline atomic.Int64 // closing: tear down at this clock value (0 = none)

	// Read side: owned by the poller goroutine (and by Start before started
	// is set). Never touched elsewhere.
	in       []byte // bytes of one incomplete frame; nil when none
	inWant   int    // bytes needed to make progress on in
	frag     []byte // payloads of a fragmented message so far
	fragOp   byte   // opText/opBinary while a fragmented message is open, else 0
	fragRSV1 bool   // the fragmented message is compressed

	mu sync.Mutex
	// Guarded by mu.
	state       connState
	startCalled bool
	initial     []byte   // bytes read with the handshake, handed to the parser by Start
	wq          [][]byte // unflushed frame bytes, in order; aliases Prepared frames
	queued      int      // total bytes in wq
	partial     bool     // wq[0] is a frame partly on the wire already
	events      int      // interest bits currently registered with epoll
	corked      bool     // the handler has more messages waiting: queue writes, flush at uncork (read.go)
	peerClosed  bool     // the peer's close frame has arrived
	cause       closeCause
	code        int
	reason      string
	wiovLen     int // bytes sysWritev tried to write

	qmu sync.Mutex
	// Guarded by qmu: messages waiting for Handler.OnMessage.
	inq            [][]byte
	draining       bool // a drain goroutine is running
	closePosted    bool // OnClose is due after inq empties
	closeDelivered bool
}

func newConn(s *Server, nc net.Conn, rc syscall.RawConn, fd int, compressed bool, initial []byte) *Conn {
	c := &Conn{
		s:          s,
		nc:         nc,
		rc:         rc,
		fd:         fd,
		gen:        s.gen.Add(1),
		compressed: compressed,
		remote:     nc.RemoteAddr(),
		initial:    initial,
	}
	c.lastRead.Store(s.clock.Load())
	return c
}

// Start begins delivering the connection's messages to the Handler. Attach
// the owner's state (SetValue) before calling it. Calls after the first do
// nothing.
func (c *Conn) Start() {
	c.mu.Lock()
	if c.startCalled || c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.startCalled = true
	initial := c.initial
	c.initial = nil
	c.mu.Unlock()

	if len(initial) > 0 {
		// The poller does not read this conn until started is set, so the
		// read-side fields are ours here.
		c.feed(initial)
	}

	c.mu.Lock()
	c.started.Store(true)
	if c.state != stateClosed {
		c.updateInterestLocked()
	}
	c.mu.Unlock()
}

// SetValue stores the owner's state for this connection.
func (c *Conn) SetValue(v any) { c.value.Store(&v) }

// Value returns what SetValue stored, or nil.
func (c *Conn) Value() any {
	if p := c.value.Load(); p != nil {
		return *p
	}
	return nil
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Subprotocol is the application protocol selected in the handshake
// ("" when the client offered none the server supports).
func (c *Conn) Subprotocol() string { return c.subprotocol }

// SendBinary sends payload as one binary message to this connection only.
// Same queueing rules as Send. The payload is copied.
func (c *Conn) SendBinary(payload []byte) error {
	return c.sendPayload(opBinary, payload)
}

// Compressed reports whether permessage-deflate was negotiated.
func (c *Conn) Compressed() bool { return c.compressed }

// Send queues the prepared message on the connection without blocking. If
// nothing is queued it is written directly from the caller's goroutine with
// one non-blocking write; what does not fit is queued (by reference) and
// flushed by the poller. It returns ErrClosed if the connection is closing,
// and ErrSlow (after closing the connection with 4008) if the queue would
// exceed Config.QueueBytes.
func (c *Conn) Send(p *Prepared) error {
	b := p.frame
	if c.compressed {
		b = p.compressedFrame()
	}
	return c.sendFrame(b, false)
}

// SendText sends payload, which must be valid UTF-8, as one text message to
// this connection only. Same queueing rules as Send. The payload is copied.
func (c *Conn) SendText(payload []byte) error {
	return c.sendPayload(opText, payload)
}

// sendPayload frames payload in a pooled buffer and sends it; only what the
// socket does not take at once is copied to the queue. A reply then costs
// no allocation when the socket has room (the common case).
func (c *Conn) sendPayload(op byte, payload []byte) error {
	n := serverHeaderLen(len(payload)) + len(payload)
	if n > maxPooledFrame {
		return c.sendFrame(buildFrame(op, false, payload), false)
	}
	bp := framePool.Get().(*[maxPooledFrame]byte)
	b := bp[:n]
	copy(b[putServerHeader(b, op, false, len(payload)):], payload)
	err := c.sendFrame(b, true)
	framePool.Put(bp)
	return err
}

// maxPooledFrame bounds the frames sendPayload builds in a pooled buffer.
const maxPooledFrame = 2048

var framePool = sync.Pool{New: func() any { return new([maxPooledFrame]byte) }}

// Close sends a close frame with code and reason (best effort, without
// blocking) and closes the connection. The TCP connection is released once
// the peer answers or after a short grace period; Handler.OnClose then
// reports code and reason. Closing a closed connection does nothing.
func (c *Conn) Close(code int, reason string) {
	if code == 0 {
		code = CloseNormal
	}
	c.closeWith(causeServer, code, reason, closeGraceful)
}

// sendFrame writes or queues one complete frame. borrowed says b is the
// caller's until sendFrame returns: what must be queued is copied.
func (c *Conn) sendFrame(b []byte, borrowed bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return ErrClosed
	}
	err := c.writeLocked(b, true, borrowed)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrSlow):
		// Drop what the reader has not started to receive (it resumes by
		// cursor), keep a frame already partly sent so the stream stays
		// well-formed, and tell the client why with a close frame.
		keep := 0
		if c.partial && len(c.wq) > 0 {
			keep = 1
		}
		clear(c.wq[keep:])
		c.wq = c.wq[:keep]
		c.queued = 0
		for _, q := range c.wq {
			c.queued += len(q)
		}
		c.closeLocked(causeSlow, CloseSlowConsumer, "slow consumer", closeGraceful)
		return ErrSlow
	default:
		c.s.log.Debug("ws: write failed", "remote", c.remote, "err", err)
		c.closeLocked(causeClient, CloseAbnormal, "write error", closeHard)
		return ErrClosed
	}
}

// writeLocked writes b directly if the queue is empty, then queues whatever
// is left (a copy of it if borrowed). With limit set, queueing past
// Config.QueueBytes fails with ErrSlow (and nothing is queued).
func (c *Conn) writeLocked(b []byte, limit, borrowed bool) error {
	st := &c.s.stats
	if len(c.wq) == 0 && !c.corked {
		n, err := c.sysWrite(b)
		st.writeSyscalls.Add(1)
		if n > 0 {
			st.bytesWritten.Add(uint64(n))
		}
		if err != nil {
			return fmt.Errorf("ws: write to %v: %w", c.remote, err)
		}
		if n == len(b) {
			st.framesWritten.Add(1)
			return nil
		}
		b = b[n:]
		c.partial = n > 0
	}
	if limit && c.queued+len(b) > c.s.cfg.QueueBytes {
		return ErrSlow
	}
	if borrowed {
		b = bytes.Clone(b)
	}
	c.wq = append(c.wq, b)
	c.queued += len(b)
	return c.updateInterestLocked()
}

// flushLocked writes as much of the queue as the socket takes, several
// frames per syscall.
func (c *Conn) flushLocked() error {
	st := &c.s.stats
	for len(c.wq) > 0 {
		n, err := c.sysWritev(c.wq)
		st.writeSyscalls.Add(1)
		st.queuedFlushes.Add(1)
		if err != nil {
			return fmt.Errorf("ws: flush to %v: %w", c.remote, err)
		}
		if n == 0 {
			return nil
		}
		st.bytesWritten.Add(uint64(n))
		c.queued -= n
		short := n < c.wiovLen
		i := 0
		for i < len(c.wq) && n >= len(c.wq[i]) {
			n -= len(c.wq[i])
			c.wq[i] = nil
			i++
		}
		st.framesWritten.Add(uint64(i))
		if i > 0 {
			c.partial = false
		}
		if n > 0 {
			c.wq[i] = c.wq[i][n:]
			c.partial = true
		}
		c.wq = c.wq[i:]
		if short {
			return nil // the socket is full; the poller calls again on EPOLLOUT
		}
	}
	c.wq = nil // drop the backing array: idle connections keep no buffers
	return nil
}

// onWritable is called by the poller on EPOLLOUT.
func (c *Conn) onWritable() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onWritableLocked()
}

func (c *Conn) onWritableLocked() {
	if c.state == stateClosed {
		return
	}
	if err := c.flushLocked(); err != nil {
		c.s.log.Debug("ws: flush failed", "remote", c.remote, "err", err)
		c.closeLocked(causeClient, CloseAbnormal, "write error", closeHard)
		return
	}
	if len(c.wq) == 0 && c.state == stateClosing {
		c.closeFlushedLocked()
		return
	}
	if err := c.updateInterestLocked(); err != nil {
		c.closeLocked(causeServer, CloseInternalError, "poller error", closeHard)
	}
}

// updateInterestLocked registers what the poller should watch for:
// readability once started, writability only while bytes are queued.
func (c *Conn) updateInterestLocked() error {
	want := 0
	if c.started.Load() {
		want |= interestRead
	}
	if len(c.wq) > 0 && !c.corked {
		want |= interestWrite
	}
	if want == c.events {
		return nil
	}
	if err := c.s.p.modify(c, want); err != nil {
		return fmt.Errorf("ws: epoll modify fd %d: %w", c.fd, err)
	}
	c.events = want
	return nil
}

// closeWith is closeLocked with the lock taken.
func (c *Conn) closeWith(cause closeCause, code int, reason string, how closeHow) {
	c.mu.Lock()
	c.closeLocked(cause, code, reason, how)
	c.mu.Unlock()
}

// closeLocked starts or finishes closing. The first call records cause, code
// and reason (reported to OnClose) and queues a close frame unless how is
// closeHard; later calls can only make the close harder.
func (c *Conn) closeLocked(cause closeCause, code int, reason string, how closeHow) {
	switch c.state {
	case stateClosed:
		return
	case stateOpen:
		c.state = stateClosing
		c.closing.Store(true)
		c.corked = false // the close frame (and what is queued before it) goes out now
		c.cause, c.code, c.reason = cause, code, reason
		if how != closeHard {
			f := buildFrame(opClose, false, closePayload(code, reason))
			if err := c.writeLocked(f, false, false); err != nil {
				how = closeHard
			}
		}
	case stateClosing:
		if how == closeGraceful {
			return
		}
	}
	switch how {
	case closeHard:
		c.teardownLocked()
	case closeFlush:
		_ = c.flushLocked() // best effort; the socket is closed either way
		c.teardownLocked()
	case closeGraceful:
		if len(c.wq) == 0 {
			c.closeFlushedLocked()
			return
		}
		c.deadline.Store(c.s.clock.Load() + int64(c.s.closeGrace))
	}
}

// closeFlushedLocked runs once our close frame is on the wire: if the peer
// has closed too (or we never read), we are done; else half-close and wait
// a bounded time for the peer's close frame or EOF.
func (c *Conn) closeFlushedLocked() {
	if c.peerClosed || !c.started.Load() {
		c.teardownLocked()
		return
	}
	if cw, ok := c.rc.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			c.teardownLocked()
			return
		}
	}
	if c.updateInterestLocked() != nil {
		c.teardownLocked()
		return
	}
	c.deadline.Store(c.s.clock.Load() + int64(c.s.closeGrace))
}

// teardownLocked releases the connection: epoll DEL (before the close, so
// the fd number cannot be reused under us), drop queued bytes, close the
// socket, unregister and post OnClose.
func (c *Conn) teardownLocked() {
	c.state = stateClosed
	c.closing.Store(true)
	c.deadline.Store(0)
	c.wq = nil
	c.queued = 0
	c.initial = nil
	if err := c.s.p.remove(c); err != nil {
		c.s.log.Warn("ws: epoll remove", "fd", c.fd, "err", err)
	}
	c.events = 0
	c.sysDiscardInput() // unread input would make close() send RST and lose our last frames
	_ = c.nc.Close()
	if cl, ok := c.rc.(interface{ Close() error }); ok { // a detached socket (poller_linux.go)
		_ = cl.Close()
	}
	c.s.unregister(c)
	c.postClose()
}

// expire is called by the sweeper for a closing conn past its deadline.
func (c *Conn) expire(now int64) {
	c.mu.Lock()
	if d := c.deadline.Load(); c.state == stateClosing && d != 0 && now >= d {
		c.teardownLocked()
	}
	c.mu.Unlock()
}
