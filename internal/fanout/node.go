// Package fanout delivers a room's messages to the viewers connected to this
// node. Per room, a Hub receives appended messages from the bus in seq order,
// keeps the recent window (the hot-room cache that polls read, R13), and on
// every tick merges what arrived, applies the render budget (must-deliver
// messages bypass it, R5/R6), encodes the batch once and hands the same
// bytes to every connection (R19/R20). Writes to big rooms are split into
// chunks across a small worker pool. The package knows nothing of HTTP or
// WebSocket framing: connections are Sinks.
package fanout

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"roomcast/internal/bus"
	"roomcast/internal/likes"
	"roomcast/internal/message"
	"roomcast/internal/metrics"
	"roomcast/internal/presence"
	"roomcast/internal/timeline"
)

// Config tunes a Node. Zero values mean the documented defaults.
type Config struct {
	Tick       time.Duration // merge window; default 100ms
	Budget     int           // droppable messages/s per room per viewer; 0 = unlimited
	Window     int           // messages cached per room; default 4096
	WindowAge  time.Duration // max age of cached messages; default 60s
	Staleness  time.Duration // a cursor whose next message is older resets; default 5s, negative = never
	WarmWindow time.Duration // history a new viewer gets; default 3s
	IdleHub    time.Duration // a hub with no viewers or polls this long is dropped; default 60s
	Workers    int           // write workers; default GOMAXPROCS
	// BigRoom is the viewer count from which a room's merge window is
	// BigTick instead of Tick (R19: big rooms batch more per write; the
	// cost of a delivery is dominated by one write syscall per connection,
	// so more messages per write is what makes a big room cheap). 0 means
	// 1000; negative disables. A big room's window opens when its first
	// pending message arrives and its batch goes out BigTick later (not at
	// fixed tick boundaries): no message waits longer than BigTick, and a
	// write carries one more message on average than fixed ticks would.
	BigRoom int
	BigTick time.Duration // default 200ms (never below Tick)
	// NoSpread writes a big room's viewers all at once at the end of each
	// window instead of in staggered groups (spread.go).
	NoSpread  bool
	ChunkSize int // connections per write job; default 512
}

func (c Config) withDefaults() Config {
	if c.Tick <= 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.Window <= 0 {
		c.Window = 4096
	}
	if c.WindowAge <= 0 {
		c.WindowAge = time.Minute
	}
	if c.Staleness == 0 {
		c.Staleness = 5 * time.Second
	}
	if c.WarmWindow <= 0 {
		c.WarmWindow = 3 * time.Second
	}
	if c.IdleHub <= 0 {
		c.IdleHub = time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = 512
	}
	if c.BigRoom == 0 {
		c.BigRoom = 1000
	}
	if c.BigTick <= 0 {
		c.BigTick = 200 * time.Millisecond
	}
	c.BigTick = max(c.BigTick, c.Tick)
	return c
}

// Deps are the seams a Node reads and writes.
type Deps struct {
	Timeline timeline.Timeline
	Bus      bus.Bus
	Presence presence.Presence
	Likes    likes.Counter
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	// Stale, if set, reports that the shared store is unreachable: polls
	// are then answered from the window and marked stale (cluster mode).
	Stale func() bool
}

// Node is every hub on this node.
type Node struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	mu   sync.RWMutex
	hubs map[string]*Hub // guarded by mu

	usersMu sync.Mutex
	users   map[string]map[*Conn]struct{} // local connections by user id; guarded by usersMu

	inbox inboxes // user-scoped messages for pollers

	dirtyMu sync.Mutex
	dirty   []*Hub // hubs with work for the next tick; guarded by dirtyMu

	flush  chan chan struct{}
	wake   chan struct{} // a must-deliver message is pending: tick now (buffered 1)
	jobs   chan writeJob
	stop   chan struct{}
	wg     sync.WaitGroup
	unsubs []func()
}

type writeJob struct {
	p     *Payload
	sinks []Sink
	wg    *sync.WaitGroup
}

// New starts a Node: its tick loop and write workers run until Close.
func New(cfg Config, deps Deps) (*Node, error) {
	if deps.Timeline == nil || deps.Bus == nil || deps.Presence == nil || deps.Likes == nil || deps.Metrics == nil {
		return nil, errors.New("fanout: missing dependency")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	n := &Node{cfg: cfg.withDefaults(), deps: deps, log: deps.Log, now: time.Now, hubs: map[string]*Hub{},
		users: map[string]map[*Conn]struct{}{}, jobs: make(chan writeJob, 256), stop: make(chan struct{}),
		flush: make(chan chan struct{}), wake: make(chan struct{}, 1)}
	for _, sub := range []struct {
		t bus.Topic
		h bus.Handler
	}{{bus.Users, n.onUserEvent}, {bus.Control, n.onControl}} {
		cancel, err := deps.Bus.Subscribe(sub.t, sub.h)
		if err != nil {
			n.unsubscribeAll()
			return nil, err
		}
		n.unsubs = append(n.unsubs, cancel)
	}
	for i := 0; i < n.cfg.Workers; i++ {
		n.wg.Add(1)
		go n.worker()
	}
	n.wg.Add(1)
	go n.run()
	return n, nil
}

func (n *Node) unsubscribeAll() {
	for _, u := range n.unsubs {
		u()
	}
	n.unsubs = nil
}

// Flush dispatches everything pending now (every room, whatever its merge
// window) and returns when it is written to the connections' queues; for
// graceful shutdown, before connections are closed.
func (n *Node) Flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case n.flush <- done:
	case <-n.stop:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the loops and unsubscribes every hub. Connections are the
// transport's to close.
func (n *Node) Close() {
	select {
	case <-n.stop:
		return
	default:
	}
	close(n.stop)
	n.wg.Wait()
	n.unsubscribeAll()
	n.mu.Lock()
	for id, h := range n.hubs {
		if h.isReady() && h.unsub != nil {
			h.unsub()
		}
		delete(n.hubs, id)
	}
	n.mu.Unlock()
}

func (n *Node) drop(reason string, count int) {
	n.deps.Metrics.Drops.WithLabelValues(reason).Add(float64(count))
}

// wakeUp makes the loop tick now, not at the next Tick: a must-deliver
// message (quiz question and reveal, rain, kick, live start/end) goes out at
// once instead of waiting up to Tick, or BigTick in a big room.
func (n *Node) wakeUp() {
	select {
	case n.wake <- struct{}{}:
	default: // a wake is already due
	}
}

func (n *Node) markDirty(h *Hub) {
	n.dirtyMu.Lock()
	n.dirty = append(n.dirty, h)
	n.dirtyMu.Unlock()
}

// hub returns room's hub, creating, subscribing and loading it if needed.
func (n *Node) hub(ctx context.Context, room string) (*Hub, error) {
	n.mu.RLock()
	h := n.hubs[room]
	n.mu.RUnlock()
	if h != nil {
		return h, h.waitReady(ctx)
	}
	n.mu.Lock()
	if h = n.hubs[room]; h != nil {
		n.mu.Unlock()
		return h, h.waitReady(ctx)
	}
	h = newHub(n, room)
	n.hubs[room] = h
	n.deps.Metrics.RoomsActive.Set(float64(len(n.hubs)))
	n.mu.Unlock()
	err := h.start(ctx)
	if err != nil {
		n.mu.Lock()
		if n.hubs[room] == h {
			delete(n.hubs, room)
		}
		n.deps.Metrics.RoomsActive.Set(float64(len(n.hubs)))
		n.mu.Unlock()
	}
	return h, err
}

// Attach adds a connection to its room. With hasCursor it first receives
// what it missed after cursor (within the window and staleness limit),
// otherwise the warm start; either way as one batch, before any live batch.
func (n *Node) Attach(ctx context.Context, c *Conn, cursor uint64, hasCursor bool) error {
	if _, err := n.deps.Presence.Join(ctx, c.Room, c.Member); err != nil {
		return err
	}
	for {
		h, err := n.hub(ctx, c.Room)
		if err == nil {
			var older []*message.Message
			var ahead bool
			if older, err = n.olderThanWindow(ctx, h, cursor, c.Epoch, hasCursor, c.HasEpoch); err == nil {
				if ahead, err = n.aheadOfWindow(ctx, h, cursor, c.Epoch, hasCursor, c.HasEpoch); err == nil {
					err = h.attach(c, cursor, hasCursor, older, ahead)
				}
			}
		}
		if errors.Is(err, errHubClosed) {
			continue
		}
		if err != nil {
			_ = n.deps.Presence.Leave(ctx, c.Room, c.Session)
			return err
		}
		break
	}
	return nil
}

// addUserConn puts c in user's entry of the user index (for user-scoped
// messages and kicks); an anonymous connection ("") is not indexed. Lock
// order: a hub's mu, then usersMu.
func (n *Node) addUserConn(c *Conn, user string) {
	if user == "" {
		return
	}
	n.usersMu.Lock()
	set := n.users[user]
	if set == nil {
		set = map[*Conn]struct{}{}
		n.users[user] = set
	}
	set[c] = struct{}{}
	n.usersMu.Unlock()
}

// removeUserConn takes c out of user's entry of the user index.
func (n *Node) removeUserConn(c *Conn, user string) {
	if user == "" {
		return
	}
	n.usersMu.Lock()
	if set := n.users[user]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(n.users, user)
		}
	}
	n.usersMu.Unlock()
}

// olderThanWindow reads from the timeline the messages after cursor that the
// hub's window no longer holds (bounded), for resumes from far back. A
// cursor of another epoch gets none (it resets).
func (n *Node) olderThanWindow(ctx context.Context, h *Hub, cursor uint64, epoch string, hasCursor, hasEpoch bool) ([]*message.Message, error) {
	if !hasCursor {
		return nil, nil
	}
	h.mu.Lock()
	first, hubEpoch := h.win.first(), h.epoch
	foreign := h.foreignLocked(cursor, epoch, hasEpoch)
	h.mu.Unlock()
	if foreign || cursor+1 >= first {
		return nil, nil
	}
	p, err := n.deps.Timeline.Range(ctx, h.room, cursor, int(min(first-1-cursor, 1000)))
	if err != nil {
		return nil, err
	}
	if p.Epoch != hubEpoch {
		h.noteEpoch(p.Epoch)
		return nil, nil
	}
	return p.Msgs, nil
}

// aheadOfWindow reports whether a cursor past the hub's window head is still
// a real position in the room (the timeline's head is at or past it, in the
// client's epoch): a client that saw messages on another node which have
// not reached this one yet. A cursor past the timeline head is from another
// epoch and resets.
func (n *Node) aheadOfWindow(ctx context.Context, h *Hub, cursor uint64, epoch string, hasCursor, hasEpoch bool) (bool, error) {
	if !hasCursor {
		return false, nil
	}
	h.mu.Lock()
	head, hubEpoch := h.win.head, h.epoch
	h.mu.Unlock()
	if cursor <= head {
		return false, nil
	}
	pos, err := n.deps.Timeline.Head(ctx, h.room)
	if err != nil {
		return false, err
	}
	if pos.Epoch != hubEpoch {
		h.noteEpoch(pos.Epoch)
	}
	return cursor <= pos.Head && (!hasEpoch || epoch == pos.Epoch), nil
}

// Detach removes a connection (after it closed).
func (n *Node) Detach(c *Conn) {
	if c.hub == nil {
		return
	}
	user, ok := c.hub.detach(c)
	if !ok {
		return
	}
	_ = n.deps.Presence.Leave(context.Background(), c.Room, c.Session)
	n.removeUserConn(c, user)
}

// onUserEvent delivers a user-scoped message to every local connection of
// its user, through each connection's hub so it is ordered with batches.
func (n *Node) onUserEvent(ev bus.Event) {
	if ev.Type != bus.EvUserMsg || ev.Msg == nil {
		return
	}
	n.inbox.add(ev.User, ev.Msg, n.now())
	n.usersMu.Lock()
	conns := make([]*Conn, 0, len(n.users[ev.User]))
	for c := range n.users[ev.User] {
		conns = append(conns, c)
	}
	n.usersMu.Unlock()
	for _, c := range conns {
		c.hub.queueDirect(c, ev.Msg)
	}
}

// onControl handles kicks: the kicked user's local connections in the room
// are closed with 4003.
func (n *Node) onControl(ev bus.Event) {
	if ev.Type != bus.EvKick {
		return
	}
	n.usersMu.Lock()
	var conns []*Conn
	for c := range n.users[ev.User] {
		if c.Room == ev.Room {
			conns = append(conns, c)
		}
	}
	n.usersMu.Unlock()
	for _, c := range conns {
		c.Sink.Close(4003, "kicked")
	}
}

func (n *Node) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Tick)
	defer t.Stop()
	// big fires at the earliest merge deadline of a big room, between ticks.
	big := time.NewTimer(time.Hour)
	big.Stop()
	defer big.Stop()
	arm := func(due time.Time) {
		if !due.IsZero() {
			big.Reset(max(due.Sub(n.now()), 0))
		}
	}
	lastSecond := n.now()
	for {
		select {
		case <-n.stop:
			return
		case done := <-n.flush:
			n.tick(n.now(), true, false)
			close(done)
		case now := <-big.C:
			arm(n.tick(now, false, true))
		case <-n.wake:
			arm(n.tick(n.now(), false, false))
		case now := <-t.C:
			arm(n.tick(now, false, false))
			if now.Sub(lastSecond) >= time.Second {
				lastSecond = now
				n.second(now)
			}
		}
	}
}

func (n *Node) worker() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case j := <-n.jobs:
			n.write(j)
		}
	}
}

func (n *Node) write(j writeJob) {
	defer j.wg.Done()
	for _, s := range j.sinks {
		_ = s.Send(j.p) // a failing sink closes itself; its owner detaches it
	}
}

// submit sends p to sinks, in chunks across the workers; wg tracks them.
func (n *Node) submit(p *Payload, sinks []Sink, wg *sync.WaitGroup) {
	for len(sinks) > 0 {
		k := min(len(sinks), n.cfg.ChunkSize)
		wg.Add(1)
		select {
		case n.jobs <- writeJob{p: p, sinks: sinks[:k], wg: wg}:
		case <-n.stop:
			wg.Done()
			return
		}
		sinks = sinks[k:]
	}
}

// tick dispatches every hub with work: each batch is encoded once and its
// writes fanned out; the tick ends when all writes are done, so batches of a
// room are never reordered. Small rooms go at every tick (every Tick); a big
// room's batch goes once BigTick has passed since its first message arrived
// (so a write carries the messages of a whole BigTick, one more than a fixed
// tick of the same length would merge, for the same longest wait). bigOnly
// ticks (between regular ticks) dispatch only big rooms that are due. tick
// returns the earliest deadline of a big room it left waiting (zero if none).
func (n *Node) tick(now time.Time, force, bigOnly bool) (next time.Time) {
	n.dirtyMu.Lock()
	hubs := n.dirty
	n.dirty = nil
	n.dirtyMu.Unlock()
	if len(hubs) == 0 {
		return time.Time{}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	var b batch
	var direct []directMsg
	for _, h := range hubs {
		if h.spreading() { // spread.go: its groups are written at their own phases
			k := n.spreadCount(h)
			if due := n.tickSpread(h, now, force || k < 2, &wg, &direct); !due.IsZero() && (next.IsZero() || due.Before(next)) {
				next = due
			}
			continue
		}
		if !force && n.isBig(h) {
			if due, ok := h.mergeDeadline(); ok && now.Before(due) {
				n.markDirty(h) // a big room merges over BigTick
				if next.IsZero() || due.Before(next) {
					next = due
				}
				continue
			}
		} else if bigOnly {
			n.markDirty(h) // small rooms wait for the regular tick
			continue
		}
		h.rotate(ctx)
		h.repair(ctx)
		b = batch{}
		if !h.prepare(now, &b) {
			continue
		}
		if b.payload != nil && len(b.sinks) > 0 {
			n.submit(b.payload, b.sinks, &wg)
		}
		if b.oldest != 0 && len(b.sinks) > 0 { // a room batch (not count updates alone)
			m := n.deps.Metrics
			m.Batches.Inc()
			m.BatchSize.Observe(float64(b.msgs))
			m.Deliveries.Add(float64(b.msgs * len(b.sinks)))
			m.DeliveryLatency.Observe(float64(now.UnixMilli()-b.oldest) / 1000)
		}
		for _, d := range b.direct {
			d.cursor, d.epoch = b.cursor, b.epoch
			direct = append(direct, d)
		}
		if k := n.spreadCount(h); !force && k >= 2 { // every viewer has the room's cursor now: split it
			h.mu.Lock()
			due := h.startSpreadLocked(now, k)
			h.mu.Unlock()
			if next.IsZero() || due.Before(next) {
				next = due
			}
		}
	}
	wg.Wait()
	// User-scoped messages go after the room batches they share a cursor
	// with, so a client never holds a cursor ahead of what it received.
	for _, d := range direct {
		_ = d.c.Sink.Send(newBatch(d.c.Room, []*message.Message{d.m}, d.cursor, d.epoch, false))
	}
	n.deps.Metrics.TickDuration.Observe(time.Since(now).Seconds())
	return next
}

// isBig reports whether h merges over BigTick (it has BigRoom viewers or more).
func (n *Node) isBig(h *Hub) bool {
	return n.cfg.BigRoom > 0 && n.cfg.BigTick > n.cfg.Tick && int(h.nconns.Load()) >= n.cfg.BigRoom
}

// Identify gives an attached anonymous connection the identity it proved
// later (a WebSocket auth frame): it joins the user index for user-scoped
// messages and kicks, and presence learns who it is.
func (n *Node) Identify(c *Conn, m presence.Member) {
	if c == nil || c.hub == nil || m.UserID == "" {
		return
	}
	m.Session = c.Session
	c.hub.mu.Lock()
	old := c.Member
	c.Member = m
	c.hub.mu.Unlock()
	_, _ = n.deps.Presence.Join(context.Background(), c.Room, m)
	n.removeUserConn(c, old.UserID)
	n.addUserConn(c, m.UserID)
}
