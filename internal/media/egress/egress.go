// Package egress writes a live stream's frames to its HTTP-FLV and RTMP
// viewers.
//
// A viewer's first write — the stream's start and the cached GOP from the
// latest key frame — is made at once by the viewer's own goroutine (the
// HTTP handler, the RTMP connection), blocking up to the write timeout.
// After it the viewer joins its stream's shared writer: one goroutine per
// lane of up to Config.LaneSize viewers of one stream. At each batch
// boundary the lane takes every member's pending frames from the hub (each
// viewer keeps its own cursor, lag policy and timestamp base in its
// hub.Reader) and writes them with one non-blocking writev per viewer,
// straight to the socket. The batch boundary is the arrival of the oldest
// frame not yet written plus Config.Delay (--media-batch), or at once when a
// key frame or hub.FlushBytes are queued, or at once for every frame when
// Delay is 0 (batching off). So a stream of 1,000 viewers costs a few
// goroutine wake-ups per batch, not two per viewer.
//
// A viewer whose socket does not take its whole batch at once (or whose
// connection another writer holds: RTMP's control messages) is handed back
// to its own goroutine with the unwritten rest. That goroutine writes the
// rest blocking, bounded by the write timeout (a viewer that does not drain
// its socket for that long is dropped: write_timeout), and then rejoins the
// lane. So a slow viewer never stalls the others; if it falls more than the
// hub's MaxLag behind, its next batch skips to the latest key frame, and
// one that keeps doing so is dropped (hub.ErrSlow), as before.
//
// An Out without a raw socket (HTTP/2 responses, TLS) is served by its own
// goroutine, paced by hub.Pacer, as every viewer was before.
//
// Data flows one way: hub → lane → socket. The protocol servers own their
// viewers; the Writers, built before them, own the lanes.
package egress

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"

	"roomcast/internal/media/hub"
)

// Config tunes the writers.
type Config struct {
	// Delay is the longest a frame waits for its viewers' next write
	// (--media-batch); 0 writes every frame at once.
	Delay time.Duration
	// BatchFrames bounds the frames per write; 0 means 512.
	BatchFrames int
	// LaneSize bounds the viewers one writer goroutine serves; 0 means 256.
	// Lanes of one stream write in parallel.
	LaneSize int
}

// Out is one viewer's connection as the writers see it.
type Out interface {
	// Build returns the bytes that carry frames (the first batch: with
	// the protocol's stream header), and how many of them are media bytes
	// (for hub.Reader.Sent). The buffers stay valid until the next Build.
	Build(rd *hub.Reader, frames []*hub.Frame, first bool) (net.Buffers, int)
	// Write writes bufs, blocking up to the viewer's write timeout.
	Write(bufs net.Buffers) error
	// Raw returns the socket for non-blocking writes, and the mutex other
	// writers of it hold (nil if none). A nil RawConn means the viewer
	// writes on its own goroutine.
	Raw() (syscall.RawConn, *sync.Mutex)
}

// Writers owns the lanes of every stream. Close stops them.
type Writers struct {
	cfg    Config
	met    *hub.Metrics
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // running lanes

	mu     sync.Mutex
	lanes  map[*hub.Stream][]*lane // guarded by mu
	closed bool                    // guarded by mu
}

// New returns Writers counting in met (the hub's metrics).
func New(cfg Config, met *hub.Metrics) *Writers {
	cfg.Delay = max(cfg.Delay, 0)
	if cfg.BatchFrames <= 0 {
		cfg.BatchFrames = 512
	}
	if cfg.LaneSize <= 0 {
		cfg.LaneSize = 256
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Writers{cfg: cfg, met: met, ctx: ctx, cancel: cancel, lanes: map[*hub.Stream][]*lane{}}
}

// Close stops every lane and waits for them. Viewers still in a lane get
// context.Canceled back. Close the protocol servers first.
func (w *Writers) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

// Serve writes rd's stream to out until the stream ends (hub.ErrEnded,
// after every frame was written), the viewer is dropped (hub.ErrSlow, a
// write error) or ctx ends. start is what goes before the first frame
// (hub.Start.Config). Call it from the viewer's goroutine, which owns rd
// again when Serve returns.
func (w *Writers) Serve(ctx context.Context, rd *hub.Reader, out Out, start []*hub.Frame) error {
	batch := make([]*hub.Frame, 0, w.cfg.BatchFrames)
	batch = append(batch, start...)
	batch, err := rd.Next(ctx, batch) // with start: at once, with the cached GOP
	if len(batch) > 0 {
		rd.Rebase(batch)
		if werr := write(rd, out, batch, true); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	rc, mu := out.Raw()
	if rc == nil || !rawWrites {
		return w.own(ctx, rd, out, batch[:0])
	}
	v := &viewer{rd: rd, out: out, rc: rc, mu: mu, batch: batch[:0], back: make(chan handback, 1)}
	for {
		v.busy.Lock()
		v.gone = false
		v.busy.Unlock()
		l := w.join(v)
		if l == nil {
			return context.Canceled // shutting down
		}
		select {
		case hb := <-v.back:
			if hb.err != nil {
				return hb.err
			}
			if err := out.Write(hb.rest); err != nil { // the rest the socket did not take at once
				return err
			}
			rd.Sent(hb.frames, hb.n)
			clear(hb.frames)
		case <-ctx.Done():
			l.leave(v)
			return ctx.Err()
		}
	}
}

// write builds and writes frames on the viewer's goroutine.
func write(rd *hub.Reader, out Out, frames []*hub.Frame, first bool) error {
	bufs, n := out.Build(rd, frames, first)
	if err := out.Write(bufs); err != nil {
		return err
	}
	rd.Sent(frames, n)
	clear(frames)
	return nil
}

// own is a viewer writing on its own goroutine, paced by hub.Pacer.
func (w *Writers) own(ctx context.Context, rd *hub.Reader, out Out, batch []*hub.Frame) error {
	pause := hub.NewPacer(w.cfg.Delay)
	for {
		var err error
		batch, err = pause.Next(ctx, rd, batch, false)
		if len(batch) > 0 {
			if werr := write(rd, out, batch, false); werr != nil {
				return werr
			}
			batch = batch[:0]
		}
		if err != nil {
			return err
		}
	}
}

// join adds v to a lane of its stream with room, starting one if needed;
// nil once the Writers are closed.
func (w *Writers) join(v *viewer) *lane {
	s := v.rd.Stream()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	var l *lane
	for _, c := range w.lanes[s] {
		if c.add(v, w.cfg.LaneSize) {
			l = c
			break
		}
	}
	if l == nil {
		l = &lane{w: w, s: s, kick: make(chan struct{}, 1), from: v.rd.Pos()}
		l.add(v, w.cfg.LaneSize)
		w.lanes[s] = append(w.lanes[s], l)
		w.wg.Add(1)
		go l.run(w.ctx) // owned by w: ends when the lane is empty or w closes
	}
	return l
}

// retire removes l from its stream's lanes if it has no members; the lane
// then ends. It reports whether it did.
func (w *Writers) retire(l *lane) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.members) > 0 {
		return false
	}
	ls := w.lanes[l.s]
	for i, c := range ls {
		if c == l {
			ls = append(ls[:i], ls[i+1:]...)
			break
		}
	}
	if len(ls) == 0 {
		delete(w.lanes, l.s)
	} else {
		w.lanes[l.s] = ls
	}
	l.dead = true
	return true
}
