package bench

import (
	"sync"
	"sync/atomic"
	"time"
)

// Forwarding delay: the time from a tag leaving the publisher (the
// bench's own, publish.go, in the same process and on the same clock) to a
// viewer receiving it, measured on the client side without help from the
// server. Over loopback that is the server's forwarding time plus two
// loopback hops.
//
// The publisher records when it sent each tag, by type and absolute
// timestamp. The server rebases timestamps per viewer (its first frame is
// at 0), so a viewer sees ts − B_v for a constant B_v. B_v is found from
// the viewer's first keyframe: the publisher's keyframe of the same size
// sent last before that keyframe arrived (sizes of neighbouring keyframes
// differ; the file repeats only every pass). Then each tag's delay is its
// arrival minus the publisher's send time of (type, ts_v + B_v); a tag the
// publisher never sent under that key counts as unmatched.
//
// Only coded frames inside the measured window count (not the cached GOP a
// viewer gets at once on arrival, nor sequence headers and metadata, which
// carry the last timestamp written rather than their own).

// fwdMaxSamples bounds one viewer's samples (a 20 s window has ~1,500).
const fwdMaxSamples = 1 << 16

// fwdSample is one tag a viewer received: when (ns since the clock's
// epoch), its type and its timestamp as the viewer saw it.
type fwdSample struct {
	at  int64
	kat int64 // when it reached the viewer's socket (the kernel's receive timestamp), same clock; 0 if unknown
	ts  uint32
	typ byte
}

// fwdRec is one viewer's record, owned by the viewer's goroutine until the
// run stops.
type fwdRec struct {
	s       []fwdSample
	keySet  bool
	keyTS   uint32 // the first keyframe's timestamp as seen
	keySize int
	keyAt   int64
}

// fwdClock is shared by a run's viewers and its publisher: the epoch of
// their times and whether the window is open.
type fwdClock struct {
	epoch time.Time
	wall  int64 // epoch in Unix ns (kernel receive timestamps are wall-clock)
	on    atomic.Bool
}

func newFwdClock() *fwdClock {
	now := time.Now()
	return &fwdClock{epoch: now, wall: now.UnixNano()}
}

func (c *fwdClock) now() int64 { return int64(time.Since(c.epoch)) }

// firstKey records the viewer's first keyframe (type video, body size).
func (c *fwdClock) firstKey(f *fwdRec, ts uint32, size int) {
	f.keySet, f.keyTS, f.keySize, f.keyAt = true, ts, size, c.now()
}

// add records a coded frame read now, whose bytes reached the socket at
// rx (Unix ns, 0 if unknown).
func (c *fwdClock) add(f *fwdRec, typ byte, ts uint32, rx int64) {
	if !c.on.Load() || len(f.s) >= fwdMaxSamples {
		return
	}
	smp := fwdSample{at: c.now(), ts: ts, typ: typ}
	if rx != 0 {
		smp.kat = rx - c.wall
	}
	f.s = append(f.s, smp)
}

// fwdKey is a published tag: its type and absolute timestamp.
type fwdKey struct {
	typ byte
	ts  uint32
}

// fwdKeyframe is a published video keyframe.
type fwdKeyframe struct {
	ts   uint32
	size int
	at   int64
}

// fwdSends is the publisher's record of what it sent when.
type fwdSends struct {
	mu   sync.Mutex
	at   map[fwdKey]int64
	keys []fwdKeyframe
}

// fwdMaxSends bounds the publisher's record (~75 tags/s: hours).
const fwdMaxSends = 1 << 20

func (p *fwdSends) sent(k fwdKey, at int64, keyframe bool, size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at == nil {
		p.at = map[fwdKey]int64{}
	}
	if len(p.at) >= fwdMaxSends {
		return
	}
	p.at[k] = at
	if keyframe {
		p.keys = append(p.keys, fwdKeyframe{ts: k.ts, size: size, at: at})
	}
}

// base finds B_v for a viewer whose first keyframe is f's.
func (p *fwdSends) base(f *fwdRec) (uint32, bool) {
	for i := len(p.keys) - 1; i >= 0; i-- {
		k := p.keys[i]
		if k.size == f.keySize && k.at <= f.keyAt && k.ts >= f.keyTS {
			return k.ts - f.keyTS, true
		}
	}
	return 0, false
}

// fwdResult is the forwarding delay over every viewer's tags.
type fwdResult struct {
	h                 Hist
	sock              Hist // the same frames, arrival in the socket (kernel timestamp) − send
	sockLate          int  // frames whose kernel timestamp came after the read: clocks disagree
	unmatchedViewers  int  // no keyframe of theirs found among the published
	unmatchedTags     int  // tags whose (type, ts + B_v) was never published
	consideredViewers int
}

// summary matches every viewer's samples against what was sent. Call it
// after the run stopped (viewers and publisher).
func (p *fwdSends) summary(recs []*fwdRec) *fwdResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &fwdResult{}
	for _, f := range recs {
		if len(f.s) == 0 {
			continue
		}
		r.consideredViewers++
		b, ok := p.base(f)
		if !ok {
			r.unmatchedViewers++
			continue
		}
		for _, s := range f.s {
			at, ok := p.at[fwdKey{s.typ, s.ts + b}]
			if !ok {
				r.unmatchedTags++
				continue
			}
			r.h.Record(time.Duration(s.at - at))
			switch {
			case s.kat == 0:
			case s.kat > s.at+int64(time.Millisecond):
				r.sockLate++
			default:
				r.sock.Record(time.Duration(max(s.kat-at, 0)))
			}
		}
	}
	return r
}
