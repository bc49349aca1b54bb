package rtmp

import (
	"context"
	"errors"
	"net"
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

	var ch chunker
	var deadline time.Time
	pause := hub.NewPacer(s.cfg.BatchDelay)
	batch := make([]*hub.Frame, 0, s.cfg.BatchFrames)
	batch = append(batch, st.Config...)
	first := true
	for {
		var err error
		batch, err = pause.Next(ctx, rd, batch, first) // held up to BatchDelay so the write carries more frames
		if len(batch) > 0 {
			if first {
				rd.Rebase(batch)
				first = false
			}
			_, n := ch.build(rd, batch)
			sess.conn.wmu.Lock()
			if now := time.Now(); deadline.Sub(now) < s.cfg.WriteTimeout/2 {
				deadline = now.Add(s.cfg.WriteTimeout)
				_ = sess.conn.Conn.SetWriteDeadline(deadline)
			}
			_, werr := ch.bufs.WriteTo(sess.conn.Conn)
			sess.conn.wmu.Unlock()
			ch.release()
			if werr != nil {
				var ne net.Error
				if errors.As(werr, &ne) && ne.Timeout() {
					rd.Drop("write_timeout")
				}
				return werr
			}
			rd.Sent(batch, n)
			clear(batch)
			batch = batch[:0]
		}
		switch {
		case errors.Is(err, hub.ErrEnded):
			_ = sess.mrw.Write(&message.UserControlStreamEOF{StreamID: 1})
			_ = sess.status("status", "NetStream.Play.UnpublishNotify", "publisher left")
			return nil
		case err != nil:
			return err
		}
	}
}
