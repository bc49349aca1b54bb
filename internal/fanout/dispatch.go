// dispatch.go: what a dispatch takes from a hub (the pending messages after
// the render budget, count updates, user-scoped messages) and the batch it
// makes of them.

package fanout

import (
	"time"

	"roomcast/internal/message"
)

// batch is one hub's work for a tick, prepared under the lock.
type batch struct {
	payload *Payload
	sinks   []Sink // the room's connections
	msgs    int
	oldest  int64
	direct  []directMsg
	cursor  uint64
	epoch   string
}

// prepare takes the pending messages, applies the render budget and encodes
// the batch once. It returns false when there is nothing to send.
func (h *Hub) prepare(now time.Time, b *batch) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.takeLocked(now)
	b.direct, b.cursor, b.epoch = t.direct, h.cursor, h.epoch
	b.sinks = h.sinks
	b.msgs = len(t.msgs)
	// Joined after the snapshot: they get this tick's messages in their
	// own first batch, and the shared batches from the next tick on.
	h.admitWaitingLocked(now)
	if len(t.msgs) == 0 && len(b.direct) == 0 && len(t.counts) == 0 && !t.reset {
		return false
	}
	if len(t.msgs) > 0 || t.reset {
		b.oldest = oldestTS(t.msgs, now)
		b.payload = newBatch(h.room, t.msgs, h.cursor, h.epoch, t.reset)
		b.payload.before = t.counts // the count updates ride in the batch's write
		h.batched = true
	} else if len(t.counts) > 0 {
		b.payload = countsPayload(t.counts)
	}
	return true
}

// taken is what a dispatch takes from the hub: the pending messages after
// the render budget, the queued count updates and user-scoped messages, and
// whether the epoch changed (the batch resets).
type taken struct {
	msgs   []*message.Message
	counts []*Payload
	direct []directMsg
	reset  bool
}

// takeLocked empties the hub's queues for a dispatch: it rebuilds the
// connection snapshot if needed, moves the cursor past every pending message
// (sent or not) and applies the render budget.
func (h *Hub) takeLocked(now time.Time) taken {
	h.dirty = false
	if h.connsChanged {
		h.snap, h.sinks = h.snap[:0], h.sinks[:0]
		for c := range h.conns {
			h.snap = append(h.snap, c)
			h.sinks = append(h.sinks, c.Sink)
		}
		h.connsChanged = false
		if h.spread != nil {
			h.spread.regroup(h.snap)
		}
	}
	t := taken{msgs: h.pending, counts: h.counts, direct: h.direct, reset: h.epochReset}
	h.pending, h.counts, h.direct = nil, nil, nil
	h.urgent, h.wakeDue = false, false
	h.epochReset = false
	if len(t.msgs) > 0 {
		// The cursor moves past everything considered, sent or not.
		h.cursor = max(h.cursor, t.msgs[len(t.msgs)-1].Seq)
	}
	if budget := h.node.cfg.Budget; budget > 0 && len(t.msgs) > 0 {
		// now may be earlier than the last refill (a node tick's time taken
		// before another dispatch of this hub): no refill then, and never
		// a negative balance.
		if now.After(h.refill) {
			h.tokens = min(float64(budget), h.tokens+now.Sub(h.refill).Seconds()*float64(budget))
			h.refill = now
		}
		h.tokens = max(h.tokens, 0)
		kept, dropped := SelectTop(t.msgs, int(h.tokens))
		// Must-deliver messages bypass the budget and do not borrow from it.
		h.tokens = max(0, h.tokens-float64(droppable(kept)))
		if dropped > 0 {
			h.node.drop("budget", dropped)
		}
		t.msgs = kept
	}
	return t
}

// oldestTS is the append time of a batch's first message (now for a batch
// without messages).
func oldestTS(msgs []*message.Message, now time.Time) int64 {
	if len(msgs) > 0 {
		return msgs[0].TS
	}
	return now.UnixMilli()
}

// countsPayload sends count updates alone: the last one, the others ahead
// of it in the same write.
func countsPayload(counts []*Payload) *Payload {
	p := counts[len(counts)-1]
	p.before = counts[:len(counts)-1]
	return p
}

// queueCountLocked keeps count update p for the room's next batch, where it
// goes out in the same write, replacing an older update of the same count
// that has not gone out yet. It does not make the hub dirty (no dispatch of
// its own): see idleCountsLocked.
func (h *Hub) queueCountLocked(p *Payload) {
	for i, q := range h.counts {
		if q.count == p.count {
			h.counts = append(h.counts[:i], h.counts[i+1:]...)
			break
		}
	}
	h.counts = append(h.counts, p)
}

// idleCountsLocked is called once a second: if the room sent no batch in
// the last second, no batch is likely to carry the queued count updates
// soon, so it returns them as one payload to send alone (nil if none).
func (h *Hub) idleCountsLocked() *Payload {
	batched := h.batched
	h.batched = false
	if len(h.counts) == 0 || batched || h.spread != nil { // spread: each group's next write carries them
		return nil
	}
	p := countsPayload(h.counts)
	h.counts = nil
	return p
}

func droppable(msgs []*message.Message) int {
	n := 0
	for _, m := range msgs {
		if !m.MustDeliver() {
			n++
		}
	}
	return n
}
