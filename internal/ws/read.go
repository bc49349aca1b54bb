package ws

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
	"unicode/utf8"
)

// This file is the read side: turning bytes read by the poller into frames,
// messages and control actions, and handing messages to the Handler on a
// per-connection drain goroutine. feed and everything it calls run on the
// poller goroutine (or in Start, before the poller reads the conn).

// feed parses b (read from the socket just now) together with any
// incomplete frame kept from earlier reads. Only the bytes of one
// incomplete frame are kept between calls, in a buffer sized for that frame.
func (c *Conn) feed(b []byte) {
	for {
		var buf []byte
		buffered := len(c.in) > 0
		if buffered {
			take := min(c.inWant-len(c.in), len(b))
			c.in = append(c.in, b[:take]...)
			b = b[take:]
			buf = c.in
		} else {
			if len(b) == 0 {
				return
			}
			buf = b
		}
		f, n, want, err := parseFrame(buf, c.maxWire(), c.compressed)
		if err != nil {
			c.failRead(err)
			return
		}
		if n == 0 { // incomplete frame
			if !buffered {
				c.in = make([]byte, len(b), want)
				copy(c.in, b)
			} else if cap(c.in) < want {
				in := make([]byte, len(c.in), want)
				copy(in, c.in)
				c.in = in
			}
			c.inWant = want
			if len(b) == 0 || !buffered {
				return
			}
			continue
		}
		if buffered {
			c.in, c.inWant = nil, 0 // the frame owns the buffer now
		} else {
			b = b[n:]
		}
		if !c.onFrame(&f, buffered) {
			return
		}
	}
}

// maxWire bounds one frame's payload and a fragmented message's wire size.
// Compressed messages may be slightly larger on the wire than inflated.
func (c *Conn) maxWire() int {
	if c.compressed {
		return c.s.cfg.MaxMessage + c.s.cfg.MaxMessage/128 + 64
	}
	return c.s.cfg.MaxMessage
}

// failRead fails the connection after a protocol violation and drops all
// read-side state; the remaining input is ignored.
func (c *Conn) failRead(err error) {
	c.in, c.inWant, c.frag, c.fragOp = nil, 0, nil, 0
	code := CloseProtocolError
	switch {
	case errors.Is(err, errTooBig), errors.Is(err, errInflateTooBig):
		code = CloseMessageTooBig
	case errors.Is(err, errInvalidUTF8), errors.Is(err, errBadDeflate):
		code = CloseInvalidPayload
	}
	c.s.log.Debug("ws: failing connection", "remote", c.remote, "code", code, "err", err)
	c.closeWith(causeProtocol, code, err.Error(), closeGraceful)
}

var (
	errInvalidUTF8    = errors.New("invalid UTF-8 in text message")
	errBadDeflate     = errors.New("invalid compressed data")
	errNoContinuation = errors.New("continuation frame without a message")
	errInterleaved    = errors.New("new data frame inside a fragmented message")
)

// onFrame handles one complete frame; owned reports that f.payload's
// buffer belongs to this frame alone (so it may be handed on without a
// copy). It returns false when reading should stop.
func (c *Conn) onFrame(f *frame, owned bool) bool {
	unmask(f.payload, f.mask, 0)
	if c.closing.Load() && f.op != opClose {
		return true // after our close frame only the peer's close matters
	}
	switch f.op {
	case opPing:
		c.sendControl(opPong, f.payload)
	case opPong:
		// lastRead was updated by the read itself.
	case opClose:
		c.onPeerClose(f.payload)
		return false
	case opText, opBinary:
		if c.fragOp != 0 {
			c.failRead(errInterleaved)
			return false
		}
		if f.fin {
			return c.onMessage(f.op, f.rsv1, f.payload, owned)
		}
		c.fragOp, c.fragRSV1 = f.op, f.rsv1
		c.frag = append(make([]byte, 0, max(len(f.payload)*2, 512)), f.payload...)
	case opContinuation:
		if c.fragOp == 0 {
			c.failRead(errNoContinuation)
			return false
		}
		if len(c.frag)+len(f.payload) > c.maxWire() {
			c.failRead(errTooBig)
			return false
		}
		c.frag = append(c.frag, f.payload...)
		if f.fin {
			msg, op, rsv1 := c.frag, c.fragOp, c.fragRSV1
			c.frag, c.fragOp, c.fragRSV1 = nil, 0, false
			return c.onMessage(op, rsv1, msg, true)
		}
	}
	return true
}

// onMessage validates a complete data message and queues it for the
// Handler.
func (c *Conn) onMessage(op byte, compressed bool, data []byte, owned bool) bool {
	if compressed {
		out, err := inflateMessage(data, c.s.cfg.MaxMessage)
		if err != nil {
			if !errors.Is(err, errInflateTooBig) {
				err = fmt.Errorf("%w: %w", errBadDeflate, err)
			}
			c.failRead(err)
			return false
		}
		data, owned = out, true
	} else if len(data) > c.s.cfg.MaxMessage {
		c.failRead(errTooBig)
		return false
	}
	if op == opText && !utf8.Valid(data) {
		c.failRead(errInvalidUTF8)
		return false
	}
	if c.s.inline != nil && c.handlerIdle() && c.callInline(data) {
		c.s.stats.messagesRead.Add(1)
		return true
	}
	if !owned {
		data = bytes.Clone(data)
	}
	if data == nil {
		data = []byte{}
	}
	return c.deliver(data)
}

// handlerIdle reports that none of c's messages is waiting for or in
// OnMessage. Only the poller queues messages, so it stays true until the
// poller queues one.
func (c *Conn) handlerIdle() bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return !c.draining && !c.closePosted
}

// callInline offers data to InlineHandler.OnMessageInline; a panic counts
// as handled (it may have answered already), and is logged.
func (c *Conn) callInline(data []byte) (handled bool) {
	defer c.recoverHandler("OnMessageInline")
	handled = true // stays true if it panics
	handled = c.s.inline.OnMessageInline(c, data)
	return handled
}

// sendControl answers a control frame (pong) from the reader.
func (c *Conn) sendControl(op byte, payload []byte) {
	// A send error closes the connection itself; nothing more to do here.
	_ = c.sendPayload(op, payload)
}

// onPeerClose handles the peer's close frame: echo it and finish closing.
func (c *Conn) onPeerClose(payload []byte) {
	code, reason, perr := parseClosePayload(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peerClosed = true
	switch {
	case c.state == stateClosed:
	case c.state == stateClosing:
		// We started the close (or failed the connection); this is the
		// answer, or a crossing close. Either way we are done.
		c.teardownLocked()
	case perr != 0:
		c.closeLocked(causeProtocol, perr, "invalid close frame", closeGraceful)
	default:
		c.closeLocked(causeClient, code, reason, closeGraceful)
	}
}

// deliver queues a message for Handler.OnMessage and starts a drain
// goroutine if none is running. It returns false if the connection was
// failed because too many messages are pending.
func (c *Conn) deliver(msg []byte) bool {
	c.qmu.Lock()
	if c.closePosted {
		c.qmu.Unlock()
		return false
	}
	if len(c.inq) >= c.s.cfg.MaxPending {
		c.qmu.Unlock()
		c.s.log.Debug("ws: too many pending messages", "remote", c.remote)
		c.in, c.inWant, c.frag, c.fragOp = nil, 0, nil, 0
		c.closeWith(causeProtocol, ClosePolicyViolation, "too many pending", closeGraceful)
		return false
	}
	c.inq = append(c.inq, msg)
	c.s.stats.messagesRead.Add(1)
	start := !c.draining
	c.draining = true
	c.qmu.Unlock()
	if start {
		c.s.runHandler(c)
	}
	return true
}

// postClose schedules Handler.OnClose after any queued messages. Called
// once, from teardownLocked.
func (c *Conn) postClose() {
	c.qmu.Lock()
	c.closePosted = true
	start := !c.draining
	c.draining = true
	c.qmu.Unlock()
	if start {
		c.s.runHandler(c)
	}
}

// runHandler gets c drained by a handler goroutine: an idle one if any is
// waiting, else a new one. Handler goroutines outlive one connection's
// burst (handlerIdle), so a message costs a hand-over rather than a new
// goroutine and the growth of its stack.
func (s *Server) runHandler(c *Conn) {
	select {
	case s.work <- c:
	default:
		s.handlers.Add(1)
		go s.handlerLoop(c)
	}
}

// handlerIdle is how long a handler goroutine waits for the next
// connection with messages before it exits.
const handlerIdle = 2 * time.Second

// handlerLoop drains c, then the connections handed to it, until it has
// been idle for handlerIdle or the server stops.
func (s *Server) handlerLoop(c *Conn) {
	defer s.handlers.Done()
	idle := time.NewTimer(handlerIdle)
	defer idle.Stop()
	for {
		c.drain()
		c = nil // no reference to an idle connection while waiting
		idle.Reset(handlerIdle)
		select {
		case c = <-s.work:
		case <-idle.C:
			return
		case <-s.stop:
			return
		}
	}
}

// drain runs Handler calls for this connection one at a time, and returns
// as soon as the queue is empty, so idle connections hold no goroutine.
//
// While more messages are waiting behind the one being handled (a client
// that sent several frames at once), the connection is corked: what is
// sent to it meanwhile (the replies) is queued and written with one writev
// when the queue is empty, so several replies share a write. The bound on
// that delay is the handling of the messages already waiting (at most
// Config.MaxPending). A lone message is answered with a direct write, as
// before.
func (c *Conn) drain() {
	corked := false
	for {
		c.qmu.Lock()
		if len(c.inq) == 0 && corked {
			c.qmu.Unlock()
			corked = false
			c.setCork(false)
			continue // look again: more may have come during the flush
		}
		if len(c.inq) == 0 {
			if c.closePosted && !c.closeDelivered {
				c.closeDelivered = true
				c.qmu.Unlock()
				c.callOnClose()
				continue
			}
			c.draining = false
			c.inq = nil
			c.qmu.Unlock()
			return
		}
		msg := c.inq[0]
		c.inq[0] = nil
		c.inq = c.inq[1:]
		more := len(c.inq) > 0
		c.qmu.Unlock()
		if more && !corked {
			corked = true
			c.setCork(true)
		}
		c.callOnMessage(msg)
	}
}

// setCork corks or uncorks the connection's writes (see drain). Uncorking
// flushes what was queued meanwhile, as on EPOLLOUT.
func (c *Conn) setCork(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = on && c.state == stateOpen // closing uncorks for good (closeLocked)
	if !on && len(c.wq) > 0 {
		c.onWritableLocked()
	}
}

func (c *Conn) callOnMessage(msg []byte) {
	defer c.recoverHandler("OnMessage")
	c.s.h.OnMessage(c, msg)
}

func (c *Conn) callOnClose() {
	defer c.recoverHandler("OnClose")
	c.mu.Lock()
	code, reason := c.code, c.reason
	c.mu.Unlock()
	c.s.h.OnClose(c, code, reason)
}

func (c *Conn) recoverHandler(where string) {
	if v := recover(); v != nil {
		c.s.log.Error("ws: handler panic", "in", where, "remote", c.remote,
			"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	}
}
