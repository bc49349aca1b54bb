package hub

import (
	"context"
	"time"
)

// Pacer holds the writes of a viewer that writes on its own goroutine (one
// without a raw socket: HTTP/2; FLV and RTMP viewers are otherwise written
// by their stream's shared writer, package egress, with the same hold rule)
// so that each carries several frames (fewer syscalls and wake-ups per
// viewer) while bounding what that costs
// in latency: a frame waits at most the delay for its viewer's next write.
// The delay runs from the arrival of the oldest frame not yet written, not
// from the last write, so nothing is held while there is nothing to send
// and the writes per second stay near one per (delay + the gap to the next
// frame). A key frame or FlushBytes queued (Reader.Flush) ends the hold at
// once. The zero delay does not hold. Its timer is reused.
type Pacer struct {
	d time.Duration
	t *time.Timer
}

// NewPacer returns a Pacer holding frames up to d.
func NewPacer(d time.Duration) *Pacer { return &Pacer{d: d} }

// Next is Reader.Next for a paced writer: it blocks until a frame is
// available and, unless first (the start of the stream, written at once),
// holds until that frame has waited the delay, then returns it with every
// frame that arrived meanwhile (up to cap(buf)).
func (p *Pacer) Next(ctx context.Context, r *Reader, buf []*Frame, first bool) ([]*Frame, error) {
	early := r.Flush() // taken before reading: a key frame arriving after the read still ends the hold
	buf, err := r.Next(ctx, buf)
	if err != nil || first || p.d <= 0 || len(buf) == 0 || len(buf) == cap(buf) || flushNow(buf) {
		return buf, err
	}
	p.hold(ctx, time.Until(buf[0].arrived.Add(p.d)), early)
	return r.Next(ctx, buf) // buf is not empty: takes what arrived, without blocking
}

// flushNow reports whether frames hold a key frame or FlushBytes: the
// same rule as Reader.Flush, for frames that came before the hold began.
func flushNow(frames []*Frame) bool {
	n := 0
	for _, f := range frames {
		if n += len(f.Tag); f.Key || n >= FlushBytes {
			return true
		}
	}
	return false
}

// hold blocks for wait, until early is closed, or until ctx ends.
func (p *Pacer) hold(ctx context.Context, wait time.Duration, early <-chan struct{}) {
	if wait <= 0 {
		return
	}
	if p.t == nil {
		p.t = time.NewTimer(wait)
	} else {
		p.t.Reset(wait)
	}
	select {
	case <-p.t.C:
	case <-early:
		p.t.Stop()
	case <-ctx.Done():
		p.t.Stop()
	}
}
