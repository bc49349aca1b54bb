package fanout

import "roomcast/internal/message"

// window is a ring of a room's most recent messages in consecutive seq
// order: the hot-room cache that polls, resumes and warm starts read (R13).
// It is owned by its hub and guarded by the hub's lock.
type window struct {
	ring  []*message.Message
	start int    // index of the oldest message
	n     int    // messages held
	head  uint64 // seq of the newest message (0 when none ever)
	max   int
}

func newWindow(max int) *window { return &window{max: max} }

// first is the seq of the oldest message held (head+1 when empty).
func (w *window) first() uint64 { return w.head + 1 - uint64(w.n) }

// reset empties the window and places its head at head.
func (w *window) reset(head uint64) {
	clear(w.ring)
	w.start, w.n, w.head = 0, 0, head
}

// push appends m, which must have seq head+1.
func (w *window) push(m *message.Message) {
	if w.n == len(w.ring) {
		if len(w.ring) < w.max {
			grown := make([]*message.Message, min(w.max, max(64, 2*len(w.ring))))
			for i := 0; i < w.n; i++ {
				grown[i] = w.ring[(w.start+i)%len(w.ring)]
			}
			w.ring, w.start = grown, 0
		} else {
			w.ring[w.start] = nil
			w.start = (w.start + 1) % len(w.ring)
			w.n--
		}
	}
	w.ring[(w.start+w.n)%len(w.ring)] = m
	w.n++
	w.head = m.Seq
}

// dropOlder removes messages with TS before cutoff (Unix ms), oldest first.
func (w *window) dropOlder(cutoff int64) {
	for w.n > 0 && w.ring[w.start].TS < cutoff {
		w.ring[w.start] = nil
		w.start = (w.start + 1) % len(w.ring)
		w.n--
	}
}

// at returns the message with seq s, or nil if not held.
func (w *window) at(s uint64) *message.Message {
	f := w.first()
	if s < f || s > w.head {
		return nil
	}
	return w.ring[(w.start+int(s-f))%len(w.ring)]
}

// appendRange appends the held messages with after < seq ≤ upTo to dst.
func (w *window) appendRange(dst []*message.Message, after, upTo uint64) []*message.Message {
	from := max(after+1, w.first())
	upTo = min(upTo, w.head)
	for s := from; s <= upTo; s++ {
		dst = append(dst, w.ring[(w.start+int(s-w.first()))%len(w.ring)])
	}
	return dst
}

// sinceTS returns the seq after which messages are newer than cutoff (Unix
// ms), looking at held messages up to upTo.
func (w *window) sinceTS(cutoff int64, upTo uint64) uint64 {
	upTo = min(upTo, w.head)
	s := upTo
	for s >= w.first() && s > 0 {
		m := w.at(s)
		if m == nil || m.TS < cutoff {
			break
		}
		s--
	}
	return s
}
