package rtmp

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/bluenviron/gortmplib/pkg/message"

	"roomcast/internal/media/flvtag"
	"roomcast/internal/media/hub"
)

// Chunk stream ids for media we send; distinct from the ones the control
// writer uses (2 control, 3 results, 5 onStatus), because our chunks always
// carry full type-0 headers and must not disturb its header compression.
const (
	csidAudio = 4
	csidVideo = 6
	csidData  = 7
)

// chunker turns shared frames into RTMP chunks for one player. Only the
// small chunk headers are per player; bodies are the hub's shared FLV tag
// bodies, passed to writev without copying.
type chunker struct {
	hdr  []byte      // header scratch, reused
	iov  [][]byte    // writev vector backing, reused
	bufs net.Buffers // the vector handed to WriteTo (it consumes it)
}

// build returns the vector for frames. Timestamps are rebased per player.
func (c *chunker) build(r *hub.Reader, frames []*hub.Frame) (net.Buffers, int) {
	need := 0
	for _, f := range frames {
		body := len(f.Tag) - flvtag.HeaderSize - flvtag.PrevSizeLen
		need += 16 + (body/outChunkSize+1)*5
	}
	if cap(c.hdr) < need {
		c.hdr = make([]byte, 0, need*2)
	}
	hdr, iov, total := c.hdr[:0], c.iov[:0], 0
	for _, f := range frames {
		ts := r.TS(f)
		body := flvtag.Body(f.Tag)
		csid := byte(csidData)
		switch f.Kind {
		case hub.KindVideo:
			csid = csidVideo
		case hub.KindAudio:
			csid = csidAudio
		}
		ext := ts >= 0xFFFFFF
		start := len(hdr)
		t24 := ts
		if ext {
			t24 = 0xFFFFFF
		}
		n := len(body)
		hdr = append(hdr, csid, byte(t24>>16), byte(t24>>8), byte(t24),
			byte(n>>16), byte(n>>8), byte(n), f.Tag[0]&0x1F,
			1, 0, 0, 0) // message stream 1, little endian
		if ext {
			hdr = append(hdr, byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts))
		}
		first := min(n, outChunkSize)
		iov = append(iov, hdr[start:len(hdr):len(hdr)], body[:first])
		total += len(hdr) - start + first
		for pos := first; pos < n; {
			start = len(hdr)
			hdr = append(hdr, 0xC0|csid)
			if ext {
				hdr = append(hdr, byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts))
			}
			end := min(n, pos+outChunkSize)
			iov = append(iov, hdr[start:len(hdr):len(hdr)], body[pos:end])
			total += len(hdr) - start + end - pos
			pos = end
		}
	}
	c.hdr, c.iov = hdr, iov
	c.bufs = iov
	return c.bufs, total
}

// release drops references to frame bodies so old frames can be freed.
func (c *chunker) release() {
	clear(c.iov)
	c.iov = c.iov[:0]
}

// playOut is a player's connection as the shared writer sees it (egress.Out).
type playOut struct {
	conn     *lockedConn
	timeout  time.Duration
	deadline time.Time // current write deadline, refreshed when half used; owned by the writer
	ch       chunker
}

func (o *playOut) Build(rd *hub.Reader, frames []*hub.Frame, _ bool) (net.Buffers, int) {
	return o.ch.build(rd, frames)
}

func (o *playOut) Write(bufs net.Buffers) error {
	o.conn.wmu.Lock()
	defer o.conn.wmu.Unlock()
	if now := time.Now(); o.deadline.Sub(now) < o.timeout/2 {
		o.deadline = now.Add(o.timeout)
		_ = o.conn.Conn.SetWriteDeadline(o.deadline)
	}
	_, err := bufs.WriteTo(o.conn.Conn)
	return err
}

func (o *playOut) Raw() (syscall.RawConn, *sync.Mutex) {
	if sc, ok := o.conn.Conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc, &o.conn.wmu
		}
	}
	return nil, nil
}

// servePlay streams rd to a player until the stream ends, the player
// leaves, or ctx ends.
func (s *Server) servePlay(ctx context.Context, sess *session, rd *hub.Reader, st hub.Start) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readDone := make(chan error, 1)
	go func() { // owned here: ends when the connection is closed below
		readDone <- sess.readLoop()
		cancel()
	}()
	defer func() {
		_ = sess.conn.Close()
		<-readDone
	}()
	_ = sess.conn.SetReadDeadline(time.Time{})

	err := s.out.Serve(ctx, rd, &playOut{conn: sess.conn, timeout: s.cfg.WriteTimeout}, st.Config)
	var ne net.Error
	switch {
	case errors.Is(err, hub.ErrEnded):
		_ = sess.mrw.Write(&message.UserControlStreamEOF{StreamID: 1})
		_ = sess.status("status", "NetStream.Play.UnpublishNotify", "publisher left")
		return nil
	case errors.As(err, &ne) && ne.Timeout():
		rd.Drop("write_timeout")
	}
	return err
}
