package hub

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reader errors.
var (
	// ErrEnded: the publisher went away and every frame has been read.
	ErrEnded = errors.New("stream ended")
	// ErrSlow: the reader fell behind too often and is dropped.
	ErrSlow = errors.New("viewer too slow")
)

// Protocols readers are counted under.
const (
	ProtoRTMP = "rtmp"
	ProtoFLV  = "flv"
	ProtoHLS  = "hls"
	// ProtoInternal readers (the HLS muxer) are not viewers.
	ProtoInternal = ""
)

// Start is what a new reader sends before the frames: everything needed to
// decode from the first frame on.
type Start struct {
	HasVideo, HasAudio bool
	// Config holds, in order, the onMetaData frame and the video and audio
	// sequence headers that exist.
	Config []*Frame
}

// Reader is one viewer's cursor into a Stream. Its methods other than
// Close and Stats must be called from one goroutine at a time: the reader's
// own, which the protocol server owns (an HTTP handler, an RTMP connection,
// the HLS muxer feeder), or the stream's shared writer while the viewer is
// one of its members (package egress hands it over and back).
type Reader struct {
	// Static after construction.
	s       *Stream
	proto   string
	remote  string
	created time.Time

	// Owned by the reader goroutine.
	next      uint64 // seq of the next frame to deliver
	waitKey   bool   // deliver nothing until a key frame
	resend    bool   // prepend the current sequence headers to the next batch
	base      time.Duration
	baseSet   bool
	lastTS    uint32
	gotKey    bool
	skips     int
	skipStart time.Time

	// Bytes written, by kind; written by the reader goroutine, read by stats.
	sentVideo, sentAudio atomic.Uint64
	bytesOut             prometheus.Counter // this protocol's sent-bytes counter, looked up once
}

// Proto is the reader's protocol.
func (r *Reader) Proto() string { return r.proto }

// Remote is the reader's remote address.
func (r *Reader) Remote() string { return r.remote }

// Stream is the stream being read.
func (r *Reader) Stream() *Stream { return r.s }

// Next blocks until at least one frame is available, then appends up to
// cap(buf)-len(buf) frames (at least 1) to buf and returns it. At the end of
// the stream it returns ErrEnded; a reader that keeps falling behind gets
// ErrSlow; ctx ending returns ctx.Err(). The returned frames stay valid
// after the ring moves on.
func (r *Reader) Next(ctx context.Context, buf []*Frame) ([]*Frame, error) {
	if cap(buf)-len(buf) < 1 {
		buf = append(buf, nil)[:len(buf)]
	}
	for {
		var sig <-chan struct{}
		var err error
		buf, sig, err = r.poll(buf)
		if err != nil || len(buf) > 0 {
			return buf, err
		}
		select {
		case <-sig:
		case <-ctx.Done():
			return buf, ctx.Err()
		}
	}
}

// Poll is Next without blocking: it appends the frames available now (none
// if there are none yet), or returns ErrEnded or ErrSlow as Next does. The
// stream's shared writer (package egress) reads its viewers with it.
func (r *Reader) Poll(buf []*Frame) ([]*Frame, error) {
	if cap(buf)-len(buf) < 1 {
		buf = append(buf, nil)[:len(buf)]
	}
	buf, _, err := r.poll(buf)
	return buf, err
}

// poll collects what is available and returns the signal to wait on when
// nothing was.
func (r *Reader) poll(buf []*Frame) ([]*Frame, <-chan struct{}, error) {
	s := r.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	buf, err := r.collectLocked(buf)
	if err == nil && len(buf) == 0 && s.ended {
		err = ErrEnded
	}
	return buf, s.signal, err
}

// collectLocked moves frames from the ring to buf, applying the lag policy.
// The caller holds s.mu (read).
func (r *Reader) collectLocked(buf []*Frame) ([]*Frame, error) {
	s := r.s
	if r.next >= s.head {
		return buf, nil
	}
	cfg := s.m.cfg
	lagged := r.next < s.tail // frames we never read were evicted
	if !lagged && s.gopOK && s.gop > r.next {
		// Behind by more than MaxLag with a newer key frame to jump to.
		lagged = s.lastDTS-s.at(r.next).DTS > cfg.MaxLag
	}
	if lagged {
		from := r.next
		reason := "lagging"
		if r.next < s.tail {
			reason = "overwritten"
		}
		if s.gopOK && s.gop >= s.tail {
			r.next = s.gop
		} else {
			r.next = s.head
			r.waitKey = true
		}
		n := r.next - from
		s.dropped.Add(n)
		s.m.met.DroppedFrames.WithLabelValues(reason).Add(float64(n))
		r.resend = true
		now := time.Now()
		if now.Sub(r.skipStart) > cfg.SkipWindow {
			r.skipStart, r.skips = now, 0
		}
		r.skips++
		if r.skips > cfg.MaxSkips {
			s.m.met.DroppedViewer.WithLabelValues("slow").Inc()
			return buf, ErrSlow
		}
		if r.next >= s.head {
			return buf, nil
		}
	}
	if r.resend && !r.waitKey {
		r.resend = false
		for _, f := range []*Frame{s.vcfg, s.acfg} {
			if f != nil && len(buf) < cap(buf) {
				buf = append(buf, f)
			}
		}
	}
	for r.next < s.head && len(buf) < cap(buf) {
		f := s.at(r.next)
		r.next++
		if r.waitKey {
			if !f.Key {
				if f.Config {
					r.resend = true // parameters changed before our first key frame
				}
				continue
			}
			r.waitKey = false
			if r.resend {
				r.resend = false
				for _, c := range []*Frame{s.vcfg, s.acfg} {
					if c != nil && len(buf)+1 < cap(buf) {
						buf = append(buf, c)
					}
				}
			}
		}
		buf = append(buf, f)
	}
	return buf, nil
}

// Pos is the seq of the next frame the reader will look at.
func (r *Reader) Pos() uint64 { return r.next }

// Flush returns a channel closed when the stream next receives a key frame
// or FlushBytes since the last such signal (or ends): a paced writer's
// reason to write before its delay is up.
func (r *Reader) Flush() <-chan struct{} {
	r.s.mu.RLock()
	defer r.s.mu.RUnlock()
	return r.s.flush
}

// TS returns the timestamp, in ms, to write for f: DTS rebased so that this
// reader's first media frame is at 0 and the cached GOP plays smoothly
// into the live frames. Sequence headers take the last timestamp written.
// Call it for frames in the order they are written.
func (r *Reader) TS(f *Frame) uint32 {
	if f.Config || f.Kind == KindMeta {
		return r.lastTS
	}
	if !r.baseSet {
		r.base, r.baseSet = f.DTS, true
	}
	d := f.DTS - r.base
	if d < 0 {
		d = 0
	}
	ts := uint32(d / time.Millisecond)
	r.lastTS = ts
	return ts
}

// Rebase sets the timestamp base to the smallest DTS among frames, so that
// audio interleaved just behind the first key frame does not go negative.
// Call it once with the first batch.
func (r *Reader) Rebase(frames []*Frame) {
	if r.baseSet {
		return
	}
	for _, f := range frames {
		if f.Config || f.Kind == KindMeta {
			continue
		}
		if !r.baseSet || f.DTS < r.base {
			r.base, r.baseSet = f.DTS, true
		}
	}
}

// Sent records bytes written by the reader goroutine, and, the first time
// a batch containing a key frame has been written, the first-keyframe
// latency.
func (r *Reader) Sent(frames []*Frame, bytes int) {
	var v, a uint64
	key := false
	for _, f := range frames {
		switch f.Kind {
		case KindVideo:
			v += uint64(len(f.Tag))
			key = key || f.Key
		case KindAudio:
			a += uint64(len(f.Tag))
			key = key || f.Key
		}
	}
	r.sentVideo.Add(v)
	r.sentAudio.Add(a)
	r.s.bytesOut.Add(uint64(bytes))
	if r.bytesOut != nil {
		r.bytesOut.Add(float64(bytes))
	}
	if key && !r.gotKey {
		r.gotKey = true
		if r.proto != ProtoInternal {
			r.s.m.met.FirstKeyframe.WithLabelValues(r.proto).Observe(time.Since(r.created).Seconds())
		}
	}
}

// FirstKeySent reports whether a key frame has been written.
func (r *Reader) FirstKeySent() bool { return r.gotKey }

// Drop counts the reader as dropped by the server for reason (e.g.
// "write_timeout"); call before Close.
func (r *Reader) Drop(reason string) {
	r.s.m.met.DroppedViewer.WithLabelValues(reason).Inc()
}

// Close detaches the reader from its stream. It is idempotent.
func (r *Reader) Close() {
	s := r.s
	s.mu.Lock()
	delete(s.readers, r)
	s.mu.Unlock()
}
