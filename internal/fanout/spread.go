// spread.go: a big room's writes spread over its merge window (issue 14).
//
// A big room merges BigTick of messages per write. Written all at once,
// its N connections are N writes in one burst: the server's write loop and
// then every viewer's decoding queue up behind each other, and the last
// viewer of the burst receives its batch a burst's length late. A room of
// at least 2×spreadGroupMin viewers is instead split into up to
// spreadGroups write groups at staggered phases: group g is written every
// BigTick, at phase g/K of it, with everything that arrived since its last
// write. Each viewer still waits at most BigTick for a message, gets the
// same messages (the render budget selects once per dispatch for the whole
// room, and each group's batch is encoded once for all its viewers), and
// the writes come in K small bursts instead of one large one.
//
// A group's connections have received the room's messages up to the
// group's cursor; a connection joining a spread room is placed in a group
// and starts from that group's cursor, so the group's next write continues
// where its first batch ended. Must-deliver messages write every group at
// once; an epoch reset, Flush and a room shrinking below the threshold end
// the spread (every group written, then one room-wide batch per tick again).
package fanout

import (
	"context"
	"sync"
	"time"

	"roomcast/internal/message"
)

const (
	spreadGroups   = 8   // most write groups of a spread room (phases per BigTick)
	spreadGroupMin = 256 // fewest viewers per group
)

// spreadState is a spread room's write groups; guarded by the hub's mu.
type spreadState struct {
	groups []spreadGroup
}

// spreadGroup is one write group.
type spreadGroup struct {
	sinks  []Sink             // its connections' sinks, rebuilt when the room's change
	n      int                // connections in it (joins and leaves since the snapshot included)
	due    time.Time          // its next write
	msgs   []*message.Message // dispatched, not yet written to it (seq order)
	counts []*Payload         // count updates not yet written to it
	cursor uint64             // the room cursor its connections have received
}

// spreadCount is how many write groups a room of n viewers gets (below 2:
// not spread).
func (n *Node) spreadCount(h *Hub) int {
	if n.cfg.NoSpread || !n.isBig(h) {
		return 0
	}
	return min(spreadGroups, int(h.nconns.Load())/spreadGroupMin)
}

// admitCursorLocked is the furthest cursor a joining connection can start
// from: the hub's, or in a spread room the furthest a group has reached.
func (h *Hub) admitCursorLocked() uint64 {
	if h.spread == nil {
		return h.cursor
	}
	c := uint64(0)
	for i := range h.spread.groups {
		c = max(c, h.spread.groups[i].cursor)
	}
	return c
}

// pick chooses a joining connection's group: the smallest, among those that
// have reached cursor when the connection resumes from one.
func (s *spreadState) pick(cursor uint64, resume bool) int {
	best := -1
	for i := range s.groups {
		g := &s.groups[i]
		if resume && g.cursor < cursor {
			continue
		}
		if best < 0 || g.n < s.groups[best].n {
			best = i
		}
	}
	if best < 0 { // admitCursorLocked kept it waiting otherwise; be safe
		best = 0
	}
	return best
}

// regroup rebuilds the groups' snapshots from the room's connections.
func (s *spreadState) regroup(conns []*Conn) {
	for i := range s.groups {
		s.groups[i].sinks = s.groups[i].sinks[:0]
	}
	for _, c := range conns {
		g := &s.groups[c.group]
		g.sinks = append(g.sinks, c.Sink)
	}
	for i := range s.groups {
		s.groups[i].n = len(s.groups[i].sinks)
	}
}

// startSpreadLocked splits the room into k groups right after a room-wide
// dispatch (so every connection has received up to h.cursor); group g is
// first written at now + (g+1)·BigTick/k.
func (h *Hub) startSpreadLocked(now time.Time, k int) time.Time {
	s := &spreadState{groups: make([]spreadGroup, k)}
	step := h.node.cfg.BigTick / time.Duration(k)
	for i := range s.groups {
		s.groups[i].cursor = h.cursor
		s.groups[i].due = now.Add(step * time.Duration(i+1))
	}
	i := 0
	for c := range h.conns {
		c.group = i % k
		i++
	}
	h.spread = s
	h.connsChanged = true
	if !h.dirty { // visited at every group's due time
		h.dirty = true
		h.node.markDirty(h)
	}
	return s.groups[0].due
}

// spreadWrite is one group's batch.
type spreadWrite struct {
	p      *Payload
	sinks  []Sink
	msgs   int
	oldest int64
}

// spreading reports whether the room's writes are spread.
func (h *Hub) spreading() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.spread != nil
}

// spreadTick is a visit of a spread room: it dispatches what is pending into
// every group's queue and writes the groups that are due (all of them when a
// must-deliver message is pending, or with end, which also ends the spread).
// It returns the writes, the user-scoped messages to send after them, and
// the earliest next due time (zero after end).
func (h *Hub) spreadTick(now time.Time, end bool) (writes []spreadWrite, direct []directMsg, next time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := end || h.urgent || h.epochReset
	t := h.takeLocked(now)
	s := h.spread
	if t.reset {
		// Everything queued belongs to the old epoch: the reset batch
		// replaces it, to every connection, and the spread starts over.
		for i := range s.groups {
			s.groups[i].msgs, s.groups[i].counts = nil, nil
		}
	}
	for i := range s.groups {
		g := &s.groups[i]
		g.msgs = append(g.msgs, t.msgs...)
		for _, p := range t.counts {
			g.counts = queueCount(g.counts, p)
		}
		if !all && now.Before(g.due) {
			continue
		}
		for !g.due.After(now) { // keep the phase
			g.due = g.due.Add(h.node.cfg.BigTick)
		}
		if len(g.msgs) > 0 || t.reset {
			g.cursor = h.cursor
			p := newBatch(h.room, g.msgs, h.cursor, h.epoch, t.reset)
			p.before = g.counts
			writes = append(writes, spreadWrite{p: p, sinks: g.sinks, msgs: len(g.msgs), oldest: oldestTS(g.msgs, now)})
		} else if len(g.counts) > 0 {
			last := g.counts[len(g.counts)-1] // shared with the other groups: a payload of its own
			p := &Payload{content: last.content, count: last.count, before: g.counts[:len(g.counts)-1]}
			writes = append(writes, spreadWrite{p: p, sinks: g.sinks})
		}
		g.msgs, g.counts = nil, nil
	}
	for _, d := range t.direct {
		d.cursor, d.epoch = h.admitCursorLocked(), h.epoch // not (or no longer) in a group: as a room-wide dispatch would
		if _, ok := h.conns[d.c]; ok {
			d.cursor = s.groups[d.c.group].cursor
		}
		direct = append(direct, d)
	}
	h.admitWaitingLocked(now)
	if end || t.reset {
		h.spread = nil
		return writes, direct, time.Time{}
	}
	if !h.dirty {
		h.dirty = true // visited at every group's due time
		h.node.markDirty(h)
	}
	next = s.groups[0].due
	for i := range s.groups {
		if s.groups[i].due.Before(next) {
			next = s.groups[i].due
		}
	}
	return writes, direct, next
}

// queueCount adds count update p to counts, replacing an older update of
// the same count.
func queueCount(counts []*Payload, p *Payload) []*Payload {
	for i, q := range counts {
		if q.count == p.count {
			return append(append(counts[:i:i], counts[i+1:]...), p)
		}
	}
	return append(counts, p)
}

// tickSpread runs a spread room's visit and submits its writes; direct
// messages are appended to direct. It returns the room's next due time.
func (n *Node) tickSpread(h *Hub, now time.Time, end bool, wg *sync.WaitGroup, direct *[]directMsg) time.Time {
	h.rotate(context.Background())
	h.repair(context.Background())
	writes, d, next := h.spreadTick(now, end)
	m := n.deps.Metrics
	for _, w := range writes {
		if len(w.sinks) > 0 {
			n.submit(w.p, w.sinks, wg)
		}
		if w.oldest != 0 && len(w.sinks) > 0 {
			m.Batches.Inc()
			m.BatchSize.Observe(float64(w.msgs))
			m.Deliveries.Add(float64(w.msgs * len(w.sinks)))
			m.DeliveryLatency.Observe(float64(now.UnixMilli()-w.oldest) / 1000)
		}
	}
	*direct = append(*direct, d...)
	return next
}
