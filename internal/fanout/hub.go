package fanout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"roomcast/internal/bus"
	"roomcast/internal/message"
	"roomcast/internal/presence"
)

// Conn is one viewer connection attached to a room's hub. The fields are
// static after Attach.
type Conn struct {
	Sink    Sink
	Room    string
	Session string          // unique per connection
	Member  presence.Member // identity for presence (UserID "" = anonymous)
	// Move, when set, is the better node for this room (R14): the first
	// batch carries it as "move" and the client reconnects there next time.
	Move string
	// Epoch is the timeline epoch of the cursor the client resumes from, if
	// it sent one (HasEpoch): a cursor of another epoch resets (issue 8).
	Epoch    string
	HasEpoch bool

	hub   *Hub
	group int // its write group while the room's writes are spread (spread.go); guarded by hub.mu
}

// Hub is one room on this node: it receives the room's appended messages
// from the bus, keeps the recent window, and each tick delivers what arrived
// to the room's connections as one batch encoded once.
type Hub struct {
	room string
	node *Node

	mu            sync.Mutex
	win           *window                     // guarded by mu
	pending       []*message.Message          // arrived, not yet dispatched; guarded by mu
	pendingSince  time.Time                   // when pending's first message arrived; guarded by mu
	urgent        bool                        // pending holds a must-deliver message: dispatch at once; guarded by mu
	wakeDue       bool                        // urgent, and the node's loop not yet woken for it; guarded by mu
	future        map[uint64]*message.Message // arrived ahead of a gap; guarded by mu
	resync        bool                        // the bus may have lost events: re-read from the head; guarded by mu
	cursor        uint64                      // last seq dispatched to connections; guarded by mu
	epoch         string                      // the timeline epoch win and cursor belong to; guarded by mu
	retired       []string                    // epochs this hub left behind (a few); guarded by mu
	epochReset    bool                        // the epoch changed since the last dispatch: the next batch resets; guarded by mu
	reused        bool                        // the store reused a seq of the epoch: rotate it at the next tick; guarded by mu
	conns         map[*Conn]struct{}          // guarded by mu
	snap          []*Conn                     // snapshot of conns for dispatch; rebuilt when connsChanged
	sinks         []Sink                      // their sinks, in the same order: what a write loop reads (no *Conn to load per write)
	connsChanged  bool                        // guarded by mu
	direct        []directMsg                 // user-scoped messages for local conns; guarded by mu
	counts        []*Payload                  // count updates for the next dispatch; guarded by mu
	batched       bool                        // a room batch went out since the last second(); guarded by mu
	waiting       []waiter                    // conns whose cursor is ahead of dispatch; guarded by mu
	dirty         bool                        // queued in node.dirty; guarded by mu
	ready         bool                        // window loaded; guarded by mu
	tokens        float64                     // render-budget bucket; guarded by mu
	refill        time.Time                   // guarded by mu
	lastUse       time.Time                   // last poll or attach; guarded by mu
	joins         []presence.Member           // this second's entries (first few); guarded by mu
	joinN, leaveN int                         // this second's counts; guarded by mu

	nconns atomic.Int32 // len(conns), readable without the lock
	closed bool         // removed from the node; guarded by mu
	online int          // as of the last second; guarded by mu
	likes  int64        // guarded by mu
	pages  pageCache    // shared poll answers; guarded by mu
	spread *spreadState // a big room's writes spread over BigTick (spread.go); nil otherwise; guarded by mu

	// Set by start before readyCh closes; read-only after.
	readyCh chan struct{}
	loadErr error
	unsub   func()
}

// errHubClosed tells a caller to look the hub up again.
var errHubClosed = errors.New("fanout: hub closed")

// start subscribes to the room and loads the window; waiters block on
// readyCh until it is done.
func (h *Hub) start(ctx context.Context) error {
	defer close(h.readyCh)
	unsub, err := h.node.deps.Bus.Subscribe(bus.RoomTopic(h.room), h.onEvent)
	if err != nil {
		h.loadErr = fmt.Errorf("fanout: subscribe %s: %w", h.room, err)
		return h.loadErr
	}
	if err := h.load(ctx); err != nil {
		unsub()
		h.loadErr = fmt.Errorf("fanout: load %s: %w", h.room, err)
		return h.loadErr
	}
	h.unsub = unsub
	online, _ := h.node.deps.Presence.Count(ctx, h.room)
	total, _ := h.node.deps.Likes.Total(ctx, h.room)
	h.mu.Lock()
	h.online, h.likes = online, total
	h.mu.Unlock()
	return nil
}

// isReady reports whether start has finished (successfully or not).
func (h *Hub) isReady() bool {
	select {
	case <-h.readyCh:
		return true
	default:
		return false
	}
}

func (h *Hub) waitReady(ctx context.Context) error {
	select {
	case <-h.readyCh:
		return h.loadErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

type directMsg struct {
	c      *Conn
	m      *message.Message
	cursor uint64 // the room cursor its batch carries; set at dispatch
	epoch  string // and that cursor's epoch
}

// maxFuture bounds messages held ahead of a gap before a repair read.
const maxFuture = 4096

func newHub(n *Node, room string) *Hub {
	return &Hub{room: room, node: n, win: newWindow(n.cfg.Window), conns: map[*Conn]struct{}{},
		future: map[uint64]*message.Message{}, lastUse: time.Now(), refill: time.Now(), tokens: float64(n.cfg.Budget),
		readyCh: make(chan struct{})}
}

// load fills the window from the timeline after the hub has subscribed, so
// nothing published in between is missed: subscribed events wait in
// future until the window is placed.
func (h *Hub) load(ctx context.Context) error {
	tl := h.node.deps.Timeline
	pos, err := tl.Head(ctx, h.room)
	if err != nil {
		return err
	}
	after := uint64(0)
	if pos.Head > uint64(h.node.cfg.Window) {
		after = pos.Head - uint64(h.node.cfg.Window)
	}
	p, err := tl.Range(ctx, h.room, after, h.node.cfg.Window)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epoch = p.Epoch
	start := max(after, p.First-1)
	if len(p.Msgs) > 0 {
		start = p.Msgs[0].Seq - 1
	}
	h.win.reset(start)
	for _, m := range p.Msgs {
		if m.Seq == h.win.head+1 {
			h.win.push(m)
		}
	}
	if h.win.head < p.Head { // raced with appends; they are in future or come next
		h.win.reset(p.Head)
	}
	h.cursor = h.win.head
	h.ready = true
	for s, m := range h.future { // arrived while loading, from an epoch the read did not see
		if m.Epoch != "" && m.Epoch != h.epoch {
			delete(h.future, s)
			h.resync = true
		}
	}
	if h.resync {
		h.markDirtyLocked() // the next tick re-reads and switches
	}
	h.drainFutureLocked()
	return nil
}

// sameEpochLocked reports whether something read or received in epoch e
// belongs to the hub's epoch. A message without one comes from a node that
// predates epochs and is taken as the current epoch's.
func (h *Hub) sameEpochLocked(e string) bool { return e == h.epoch }

// reusedLocked records that the store handed out seq again in the hub's
// epoch — it lost writes (a failover) and its counter went back. Seqs of
// this epoch no longer name one message each, so the next tick rotates
// the room's epoch: every reader resets instead of skipping or mixing.
func (h *Hub) reusedLocked(seq uint64) {
	if !h.reused {
		h.node.log.Warn("fanout: the store reused a seq: rotating the room's epoch", "room", h.room, "seq", seq, "epoch", h.epoch, "head", h.win.head)
	}
	h.reused = true
	h.markDirtyLocked()
}

// rotate runs at a tick after reusedLocked: a new epoch for the room, then
// a re-read that switches to it.
func (h *Hub) rotate(ctx context.Context) {
	h.mu.Lock()
	reused, epoch := h.reused, h.epoch
	h.reused = false
	h.mu.Unlock()
	if !reused {
		return
	}
	if _, err := h.node.deps.Timeline.Rotate(ctx, h.room, epoch); err != nil {
		h.node.log.Warn("fanout: epoch rotation failed", "room", h.room, "err", err)
		h.mu.Lock()
		h.reused = true // retried with the next event
		h.mu.Unlock()
		return
	}
	h.mu.Lock()
	h.resync = true
	h.markDirtyLocked()
	h.mu.Unlock()
}

// noteEpoch is told the store's current epoch for the room, read outside
// the lock: if it is not the hub's, the next tick re-reads the room and
// switches (a hub with no traffic learns of a lost sequence this way too).
func (h *Hub) noteEpoch(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ready && !h.sameEpochLocked(e) && !slices.Contains(h.retired, e) {
		h.resync = true
		h.markDirtyLocked()
	}
}

// switchEpochLocked drops everything the hub holds of its epoch (the window,
// held-back messages, the dispatch cursor) and moves to epoch e: the store
// lost the room's sequence and started over (issue 8). Connections get a
// reset with their next batch; a later read or message of a retired epoch
// is ignored. It reports false for a retired e.
func (h *Hub) switchEpochLocked(e string) bool {
	if slices.Contains(h.retired, e) {
		return false
	}
	if h.win.head > 0 || h.epoch != "" { // cursor 0 is in every epoch: nothing to reset
		h.epochReset = true
		h.node.drop("epoch_reset", h.win.n)
		h.retired = append(h.retired, h.epoch)
		if len(h.retired) > 4 {
			h.retired = h.retired[1:]
		}
		h.node.log.Warn("fanout: timeline epoch changed: dropping the cached window", "room", h.room, "from", h.epoch, "to", e, "head", h.win.head)
	}
	h.epoch = e
	h.win.reset(0)
	h.cursor = 0
	h.pending = nil
	h.urgent, h.wakeDue = false, false
	clear(h.future)
	h.resync = true // read the new epoch from its start
	h.markDirtyLocked()
	return true
}

// onEvent receives a room event from the bus.
func (h *Hub) onEvent(ev bus.Event) {
	if ev.Type == bus.EvResync { // Redis resubscribed: what was published meanwhile is read back at the next tick
		h.mu.Lock()
		h.resync = true
		h.markDirtyLocked()
		h.mu.Unlock()
		return
	}
	if ev.Type != bus.EvMessage || ev.Msg == nil {
		return
	}
	h.mu.Lock()
	if h.ready && ev.Msg.Epoch != "" && !h.sameEpochLocked(ev.Msg.Epoch) && !h.switchEpochLocked(ev.Msg.Epoch) {
		h.mu.Unlock()
		return // a late message of an epoch already left behind
	}
	h.ingestLocked(ev.Msg)
	h.mu.Unlock()
}

// ingestLocked takes a message of the hub's epoch in.
func (h *Hub) ingestLocked(m *message.Message) {
	if !h.ready {
		if len(h.future) < maxFuture {
			h.future[m.Seq] = m
		}
		return
	}
	switch {
	case m.Seq <= h.win.head:
		if held := h.win.at(m.Seq); held != nil && held.ID != m.ID && m.Epoch != "" {
			h.reusedLocked(m.Seq) // the store gave this seq to another message
		}
		return // duplicate
	case m.Seq == h.win.head+1:
		h.win.push(m)
		h.addPendingLocked(m)
		h.drainFutureLocked()
	default: // gap: hold it and let the tick loop repair with one range read
		if len(h.future) < maxFuture {
			h.future[m.Seq] = m
		}
	}
	h.markDirtyLocked()
}

// addPendingLocked queues m for the next dispatch, noting when the batch
// being merged got its first message (a big room's merge window starts then).
func (h *Hub) addPendingLocked(m *message.Message) {
	if len(h.pending) == 0 {
		h.pendingSince = h.node.now()
	}
	h.pending = append(h.pending, m)
	if m.MustDeliver() && !h.urgent { // a quiz question or reveal, a rain, a kick: no merge wait
		h.urgent, h.wakeDue = true, true
	}
}

// mergeDeadline is when a big room's merged batch is due: BigTick after its
// first pending message arrived. ok is false when nothing is pending (the
// hub is dirty for other work, which is due at once).
func (h *Hub) mergeDeadline() (due time.Time, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pending) == 0 {
		return time.Time{}, false
	}
	if h.urgent {
		return h.pendingSince, true
	}
	return h.pendingSince.Add(h.node.cfg.BigTick), true
}

func (h *Hub) drainFutureLocked() {
	for len(h.future) > 0 {
		for s := range h.future {
			if s <= h.win.head {
				delete(h.future, s)
			}
		}
		m, ok := h.future[h.win.head+1]
		if !ok {
			return
		}
		delete(h.future, m.Seq)
		h.win.push(m)
		h.addPendingLocked(m)
		h.markDirtyLocked()
	}
}

// repair fills a gap (messages missed by the bus) with one range read; after
// a resync (EvResync) it reads whatever follows the window's head.
func (h *Hub) repair(ctx context.Context) {
	if h.repairOnce(ctx) { // moved to a new epoch: read it now, so the reset batch holds its messages
		h.repairOnce(ctx)
	}
}

// repairOnce is one repair read; it reports whether the hub switched epochs.
func (h *Hub) repairOnce(ctx context.Context) (switched bool) {
	h.mu.Lock()
	if (len(h.future) == 0 && !h.resync) || !h.ready {
		h.mu.Unlock()
		return false
	}
	after := h.win.head
	limit := h.node.cfg.Window
	var lowest uint64
	for s := range h.future {
		if lowest == 0 || s < lowest {
			lowest = s
		}
	}
	if lowest > 0 {
		limit = int(min(lowest-after, uint64(limit)))
	}
	resync, epoch := h.resync, h.epoch
	h.resync = false
	h.mu.Unlock()
	p, err := h.node.deps.Timeline.Range(ctx, h.room, after, limit)
	msgs, first := p.Msgs, p.First
	if err != nil {
		h.node.log.Warn("fanout: gap repair failed", "room", h.room, "err", err)
		if resync {
			h.mu.Lock()
			h.resync = true // retried with the next event
			h.mu.Unlock()
		}
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.sameEpochLocked(epoch) {
		// The hub moved to another epoch while the read was out (a message of
		// it came over the bus): the answer may predate that epoch — e.g. the
		// store seen empty, with no epoch, just before another node's append
		// started the new one. Acting on it would retire the newer epoch;
		// read again instead.
		h.resync = true
		h.markDirtyLocked()
		return false
	}
	// The counter went back (the next appends reuse seqs) only if the store's
	// head is below what the hub held when the read began: the bus may have
	// pushed the window past p.Head since (appends that followed the read).
	if p.Epoch == epoch && p.Head < after {
		h.reusedLocked(p.Head + 1)
		return false
	}
	if p.Epoch != epoch { // the store started over
		return h.switchEpochLocked(p.Epoch) // and read the new epoch from 0
	}
	if resync && len(msgs) == limit { // more may follow: read on at the next tick
		h.resync = true
		h.node.markDirty(h)
	}
	if first > h.win.head+1 { // the gap was trimmed away: skip over it
		h.node.drop("gap_trimmed", int(first-h.win.head-1))
		h.win.reset(first - 1)
	}
	for _, m := range msgs {
		h.ingestLocked(m)
	}
	return false
}

func (h *Hub) markDirtyLocked() {
	if !h.dirty {
		h.dirty = true
		h.node.markDirty(h)
	}
	if h.wakeDue { // after the hub is in the dirty list, so the woken tick finds it
		h.wakeDue = false
		h.node.wakeUp()
	}
}

// detach removes c.
func (h *Hub) detach(c *Conn) (user string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, w := range h.waiting {
		if w.c == c {
			h.waiting = append(h.waiting[:i], h.waiting[i+1:]...)
			h.lastUse = h.node.now()
			return c.Member.UserID, true
		}
	}
	if _, ok := h.conns[c]; !ok {
		return "", false
	}
	delete(h.conns, c)
	h.nconns.Store(int32(len(h.conns)))
	h.connsChanged = true
	if h.spread != nil {
		h.spread.groups[c.group].n--
	}
	h.lastUse = h.node.now()
	h.leaveN++
	return c.Member.UserID, true
}

func (h *Hub) noteJoinLocked(m presence.Member) {
	h.joinN++
	if len(h.joins) < presenceNames && m.UserID != "" {
		h.joins = append(h.joins, m)
	}
}

// presenceNames is how many joins a second are announced by name; more are
// summarized ("+37 joined").
const presenceNames = 3

// queueDirect queues a user-scoped message for c, delivered at the next tick.
func (h *Hub) queueDirect(c *Conn, m *message.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.direct) < 10000 {
		h.direct = append(h.direct, directMsg{c: c, m: m})
	} else {
		h.node.drop("direct_overflow", 1)
	}
	h.markDirtyLocked()
}
