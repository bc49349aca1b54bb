package egress

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"

	"roomcast/internal/media/hub"
)

// viewer is a member of a lane. While it is one, the lane's goroutine owns
// its Reader, Out and batch; handing it back (on v.back) returns them to
// the viewer's goroutine.
type viewer struct {
	rd    *hub.Reader
	out   Out
	rc    syscall.RawConn
	mu    *sync.Mutex // held around writes to the socket; nil: none
	batch []*hub.Frame
	back  chan handback // buffered 1

	// busy is held by the lane while it serves the viewer, and by a viewer
	// leaving, so that it takes its Reader back only between writes.
	busy sync.Mutex
	gone bool // handed back or left; guarded by busy
}

// handback is what a lane gives a viewer's goroutine back with: an error
// (hub.ErrEnded, hub.ErrSlow, a write error), or a write the socket did not
// take whole — frames, their media bytes and the rest to write.
type handback struct {
	err    error
	frames []*hub.Frame
	n      int
	rest   net.Buffers
}

// lane is one writer goroutine for up to Config.LaneSize viewers of one
// stream.
type lane struct {
	w    *Writers
	s    *hub.Stream
	kick chan struct{} // buffered 1: a viewer joined or left

	mu      sync.Mutex
	members []*viewer // guarded by mu
	from    uint64    // the lowest position a joiner had; guarded by mu
	dead    bool      // retired: takes no more members; guarded by mu

	snap []*viewer // the round's members; owned by run
	iov  iovec     // writev vector; owned by run
}

// add makes v a member unless the lane is full or retired.
func (l *lane) add(v *viewer, size int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead || len(l.members) >= size {
		return false
	}
	l.members = append(l.members, v)
	l.from = min(l.from, v.rd.Pos())
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return true
}

// remove takes v out of the members.
func (l *lane) remove(v *viewer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, m := range l.members {
		if m == v {
			last := len(l.members) - 1
			l.members[i] = l.members[last]
			l.members[last] = nil
			l.members = l.members[:last]
			break
		}
	}
	if len(l.members) == 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// leave takes v out of the lane for good (its context ended), waiting for
// a write to it in progress.
func (l *lane) leave(v *viewer) {
	l.remove(v)
	v.busy.Lock()
	handed := v.gone
	v.gone = true
	v.busy.Unlock()
	if handed {
		<-v.back // sent before gone was set; the viewer is leaving anyway
		return
	}
	clear(v.batch)
}

// run writes the members' frames at each batch boundary until the lane is
// empty or ctx ends.
func (l *lane) run(ctx context.Context) {
	defer l.w.wg.Done()
	var t *time.Timer
	var last uint64 // frames before it were written to every member at the last round
	l.mu.Lock()
	last, l.from = l.from, ^uint64(0)
	l.mu.Unlock()
	for {
		l.mu.Lock()
		empty := len(l.members) == 0
		last, l.from = min(last, l.from), ^uint64(0)
		l.mu.Unlock()
		if empty && l.w.retire(l) {
			l.stop()
			return
		}
		b := l.s.Backlog(last)
		if b.Head <= last && !b.Ended {
			select { // nothing new: wait for a frame
			case <-b.Signal:
			case <-l.kick:
			case <-ctx.Done():
				l.stop()
				return
			}
			continue
		}
		if wait := time.Until(b.Oldest.Add(l.w.cfg.Delay)); wait > 0 && !b.Urgent && !b.Ended {
			if t == nil {
				t = time.NewTimer(wait)
			} else {
				t.Reset(wait)
			}
			select { // the batch boundary: the oldest frame has waited Delay, or a key frame / FlushBytes came
			case <-t.C:
			case <-b.Flush:
				t.Stop()
			case <-ctx.Done():
				t.Stop()
				l.stop()
				return
			}
		}
		last = l.s.Backlog(last).Head // frames that come during the round are the next one's
		l.round()
		l.w.met.EgressRounds.Inc()
		if !b.Oldest.IsZero() {
			l.w.met.EgressDelay.Observe(time.Since(b.Oldest).Seconds())
		}
	}
}

// stop hands every member back with context.Canceled (Writers closing).
func (l *lane) stop() {
	l.mu.Lock()
	l.dead = true
	l.snap = append(l.snap[:0], l.members...)
	l.mu.Unlock()
	for _, v := range l.snap {
		l.handBack(v, handback{err: context.Canceled})
	}
	clear(l.snap)
}

// round writes every member's pending frames.
func (l *lane) round() {
	l.mu.Lock()
	l.snap = append(l.snap[:0], l.members...)
	l.mu.Unlock()
	for _, v := range l.snap {
		l.serve(v)
	}
	clear(l.snap)
}

// serve writes v's pending frames, or hands v back.
func (l *lane) serve(v *viewer) {
	v.busy.Lock()
	defer v.busy.Unlock()
	if v.gone {
		return
	}
	frames, err := v.rd.Poll(v.batch[:0])
	if len(frames) > 0 {
		bufs, n := v.out.Build(v.rd, frames, false)
		rest, busy, werr := l.try(v, bufs)
		if werr != nil || len(rest) > 0 {
			if werr == nil {
				reason := "socket_full"
				if busy {
					reason = "socket_busy"
				}
				l.w.met.EgressHandbacks.WithLabelValues(reason).Inc()
			}
			l.handBackLocked(v, handback{err: werr, frames: frames, n: n, rest: rest})
			return
		}
		v.rd.Sent(frames, n)
		clear(frames)
	}
	if err != nil {
		l.handBackLocked(v, handback{err: err})
	}
}

func (l *lane) handBack(v *viewer, hb handback) {
	v.busy.Lock()
	defer v.busy.Unlock()
	if !v.gone {
		l.handBackLocked(v, hb)
	}
}

// handBackLocked gives v back to its goroutine; the caller holds v.busy.
func (l *lane) handBackLocked(v *viewer, hb handback) {
	l.remove(v)
	v.gone = true
	v.back <- hb
}

// consume drops the first n bytes of bufs (and the references to what was
// written).
func consume(bufs net.Buffers, n int) net.Buffers {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs[0] = nil
		bufs = bufs[1:]
	}
	if n > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}
