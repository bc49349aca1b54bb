package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// wsRun is what the WebSocket clients of one run share.
type wsRun struct {
	t        target
	room     string
	timeout  time.Duration
	maxFrame int
	proto    bool // readers speak the protobuf encoding (--format proto)
	readerChecks

	send      *sendStats // acks of WS sends
	badFrames atomic.Uint64
	errFrames atomic.Uint64

	mu     sync.Mutex
	closes errCounter // why the server closed connections
}

// wsClient is one WebSocket connection. Its reader goroutine owns every
// field but the write side (wmu) and the atomic counters, which the progress
// line reads.
type wsClient struct {
	run   *wsRun
	id    int
	token string

	conn net.Conn
	br   *bufio.Reader
	buf  []byte
	fi   frameInfo
	seq  seqCheck
	acks []uint64

	wmu  sync.Mutex
	wbuf []byte
	rnd  uint32
	done bool        // shut down: dial must not install a new conn
	up   atomic.Bool // connected at least once

	msgs   atomic.Uint64 // messages delivered (any kind)
	bench  atomic.Uint64 // bench messages delivered, sent after run.since
	frames atomic.Uint64
	bytes  atomic.Uint64 // data message payload bytes received
	last   atomic.Uint64 // last seq seen, for the tail check
	pdec   *protoDecoder // --format proto
	sem    chan struct{} // in-flight WS sends (senders only)
}

// dialURL builds the /ws URL, resuming after cursor when it is not 0.
func (r *wsRun) dialURL(token string, cursor uint64) string {
	q := url.Values{}
	q.Set("room", r.room)
	if cursor > 0 {
		q.Set("cursor", strconv.FormatUint(cursor, 10))
	}
	if token != "" {
		q.Set("token", token)
	}
	return "ws://" + r.t.base.Host + r.t.base.Path + "/ws?" + q.Encode()
}

// statusErr is a handshake answered with an HTTP status instead of 101.
type statusErr struct {
	status int
	body   string
}

func (e *statusErr) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

// dial connects c (again, when resuming at cursor).
func (c *wsClient) dial(ctx context.Context, cursor uint64) error {
	var se *statusErr
	d := ws.Dialer{
		Timeout:        c.run.timeout,
		ReadBufferSize: 2048,
		Protocols:      c.run.protocols(),
		OnStatusError: func(status int, reason []byte, resp io.Reader) {
			b := make([]byte, 200)
			n, _ := io.ReadFull(resp, b)
			se = &statusErr{status: status, body: string(b[:n])}
		},
	}
	conn, br, hs, err := d.Dial(ctx, c.run.dialURL(c.token, cursor))
	if err != nil {
		if se != nil {
			return se
		}
		return err
	}
	if c.run.proto && hs.Protocol != subprotocolProto {
		conn.Close()
		return fmt.Errorf("server did not select %s (got %q)", subprotocolProto, hs.Protocol)
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 2048)
	}
	c.wmu.Lock()
	if c.done {
		c.wmu.Unlock()
		conn.Close()
		return net.ErrClosed
	}
	c.conn, c.br = conn, br
	c.wmu.Unlock()
	c.up.Store(true)
	if c.rnd == 0 {
		c.rnd = uint32(c.id)*2654435761 + 1
	}
	return nil
}

// subprotocolProto selects the protobuf encoding (wire.SubprotocolProto;
// the bench is a client and does not import server packages).
const subprotocolProto = "roomcast.v1.proto"

func (r *wsRun) protocols() []string {
	if r.proto {
		return []string{subprotocolProto}
	}
	return nil
}

// dialLabel classifies a failed dial.
func dialLabel(err error) string {
	var se *statusErr
	var st ws.StatusError
	switch {
	case errors.As(err, &se):
		return "status " + strconv.Itoa(se.status)
	case errors.As(err, &st):
		return "status " + strconv.Itoa(int(st))
	}
	return errLabel(err)
}

func (c *wsClient) mask() [4]byte {
	x := c.rnd
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	c.rnd = x
	return [4]byte{byte(x), byte(x >> 8), byte(x >> 16), byte(x >> 24)}
}

// write sends one masked client frame.
func (c *wsClient) write(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.conn == nil {
		return net.ErrClosed
	}
	b := append(c.wbuf[:0], 0x80|byte(op))
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	m := c.mask()
	b = append(b, m[:]...)
	start := len(b)
	b = append(b, p...)
	ws.Cipher(b[start:], m, 0)
	c.wbuf = b
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(b)
	return err
}

// shutdown closes c for good.
func (c *wsClient) shutdown() {
	c.wmu.Lock()
	c.done = true
	c.wmu.Unlock()
	c.close()
}

// close sends a normal close frame (best effort) and closes the socket.
func (c *wsClient) close() {
	c.write(ws.OpClose, []byte{0x03, 0xe8})
	c.wmu.Lock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	c.wmu.Unlock()
}

var errFrameTooLarge = errors.New("frame too large")

// readLoop reads frames until the connection ends. The error says why (a
// *closeErr after a close frame from the server).
func (c *wsClient) readLoop() error {
	br := c.br
	var hdr [ws.MaxHeaderSize]byte
	for {
		h, err := ws.ReadHeaderBuffer(br, hdr[:])
		if err != nil {
			return err
		}
		if h.Length > int64(c.run.maxFrame) {
			return errFrameTooLarge
		}
		if h.OpCode.IsControl() {
			var p [125]byte
			if h.Length > 125 {
				return errors.New("control frame too long")
			}
			if _, err := io.ReadFull(br, p[:h.Length]); err != nil {
				return err
			}
			if h.Masked {
				ws.Cipher(p[:h.Length], h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				if err := c.write(ws.OpPong, p[:h.Length]); err != nil {
					return err
				}
			case ws.OpClose:
				code, reason := ws.ParseCloseFrameData(p[:h.Length])
				c.write(ws.OpClose, p[:min(h.Length, 2)])
				return &closeErr{code: code, reason: reason}
			}
			continue
		}
		// Data frame, possibly fragmented: gather it in c.buf.
		b := c.buf[:0]
		for {
			n := int(h.Length)
			if len(b)+n > c.run.maxFrame {
				return errFrameTooLarge
			}
			if cap(b)-len(b) < n {
				nb := make([]byte, len(b), len(b)+n+n/2+256)
				copy(nb, b)
				b = nb
			}
			p := b[len(b) : len(b)+n]
			if _, err := io.ReadFull(br, p); err != nil {
				return err
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			b = b[:len(b)+n]
			if h.Fin {
				break
			}
			if h, err = ws.ReadHeaderBuffer(br, hdr[:]); err != nil {
				return err
			}
			if h.OpCode != ws.OpContinuation {
				return errors.New("bad continuation frame")
			}
		}
		c.buf = b
		c.handle(b)
	}
}

// handle processes one data message: the per-message hot path.
func (c *wsClient) handle(p []byte) {
	r := c.run
	c.frames.Add(1)
	c.bytes.Add(uint64(len(p)))
	fi := &c.fi
	if r.proto {
		if c.pdec == nil {
			c.pdec = &protoDecoder{}
		}
		if c.pdec.each(p, fi, c.process) != nil {
			r.badFrames.Add(1)
		}
		return
	}
	if decodeJSONFrame(p, fi) != nil {
		r.badFrames.Add(1)
		return
	}
	c.process(fi)
}

// process accounts for one decoded frame.
func (c *wsClient) process(fi *frameInfo) {
	r := c.run
	switch fi.typ {
	case frameBatch:
		nb := r.batch(fi, &c.seq, c.id)
		c.msgs.Add(uint64(len(fi.msgs)))
		if nb > 0 {
			c.bench.Add(nb)
		}
		c.seq.publish(&c.last) // after the counts: a reader caught up has them
	case frameAck:
		if sent, ok := ackTime(fi.id); ok && r.send != nil {
			r.send.ack(fi.seq, time.Duration(time.Now().UnixNano()-sent))
			c.acks = append(c.acks, fi.seq)
			c.release()
		}
	case frameError:
		r.errFrames.Add(1)
		if _, ok := ackTime(fi.id); ok && r.send != nil {
			r.send.fail("error " + string(fi.code))
			c.release()
		}
	}
}

func (c *wsClient) release() {
	if c.sem != nil {
		select {
		case <-c.sem:
		default:
		}
	}
}

// ackTime parses the send time out of an id made by wsWriter ("b<conn>.<ns>").
func ackTime(id []byte) (int64, bool) {
	if len(id) < 3 || id[0] != 'b' {
		return 0, false
	}
	i := indexByte(id, '.')
	if i < 0 {
		return 0, false
	}
	v, ok := parseUint(id[i+1:])
	return int64(v), ok
}

// closeErr is a close frame from the server.
type closeErr struct {
	code   ws.StatusCode
	reason string
}

func (e *closeErr) Error() string {
	r := e.reason
	if len(r) > 40 {
		r = r[:40]
	}
	return strings.TrimSpace(strconv.Itoa(int(e.code)) + " " + r)
}

// lost records why a connection ended while the run still wanted it.
func (r *wsRun) lost(err error) {
	label := "read: " + errLabel(err)
	var ce *closeErr
	if errors.As(err, &ce) {
		label = ce.Error()
	}
	r.mu.Lock()
	r.closes.add(label, 1)
	r.mu.Unlock()
}

// wsWriter sends chat frames on c until ctx ends, at most sp.inflight
// awaiting an ack.
func (c *wsClient) wsWriter(ctx context.Context, sp *sendSpec, i int, start time.Time) {
	s := c.run.send
	var body, id []byte
	pace := sp.pace(i, start)
	for n := 0; pace.wait(ctx, n); n++ {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		nano := time.Now().UnixNano()
		id = append(append(append(id[:0], 'b'), strconv.Itoa(c.id)...), '.')
		id = strconv.AppendInt(id, nano, 10)
		body = sp.appendMessage(body[:0], id, nano)
		s.sent.Add(1)
		if err := c.write(ws.OpText, body); err != nil {
			s.fail(errLabel(err))
			c.release()
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
		}
	}
}
