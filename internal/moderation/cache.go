package moderation

import (
	"context"
	"sync"
	"time"
)

// roomState is one room's mutes and kicks as of version ver (issue 14): what
// the Redis store's per-room hash held at ver.
type roomState struct {
	ver   int64
	mutes map[string]int64 // user → until, Unix ms
	kicks map[string]int64
}

func newRoomState() *roomState {
	return &roomState{mutes: map[string]int64{}, kicks: map[string]int64{}}
}

// Kinds of change, as in the hash's field names ("m:user", "k:user").
const (
	kindMute = 'm'
	kindKick = 'k'
)

// change is one mute, unmute, kick or kick lift: the version it moved the
// room from (prev) and to (ver).
type change struct {
	kind      byte
	user      string
	until     int64 // Unix ms; 0 lifts
	prev, ver int64
}

func (s *roomState) table(kind byte) map[string]int64 {
	if kind == kindKick {
		return s.kicks
	}
	return s.mutes
}

// apply moves s by c. It reports false when c does not follow s (a change
// in between was missed): s is then unchanged and must be reloaded. A
// change s already reflects is skipped, so an old mute never hides a later
// unmute.
func (s *roomState) apply(c change) bool {
	switch {
	case c.ver <= s.ver:
		return true
	case c.prev != s.ver:
		return false
	}
	s.ver = c.ver
	if c.until == 0 {
		delete(s.table(c.kind), c.user)
	} else {
		s.table(c.kind)[c.user] = c.until
	}
	return true
}

// active reports whether user has a mute or kick (kind) that ends after now.
func (s *roomState) active(kind byte, user string, now int64) bool {
	return s.table(kind)[user] > now
}

// prune drops what ended before now.
func (s *roomState) prune(now int64) {
	for _, t := range []map[string]int64{s.mutes, s.kicks} {
		for u, until := range t {
			if until <= now {
				delete(t, u)
			}
		}
	}
}

// CacheConfig bounds the per-node room cache. Zero values mean the defaults.
type CacheConfig struct {
	// Idle drops a room nobody asked about for this long; default 1m.
	Idle time.Duration
	// MaxAge reloads a room loaded this long ago, in case a change's event
	// was lost without the bus noticing (its writer lost Redis between the
	// write and the publish); default 1m.
	MaxAge time.Duration
	// MaxRooms caps the cached rooms; past it a room is read from Redis on
	// every check, not cached. Default 100,000.
	MaxRooms int
}

func (c *CacheConfig) defaults() {
	if c.Idle <= 0 {
		c.Idle = time.Minute
	}
	if c.MaxAge <= 0 {
		c.MaxAge = time.Minute
	}
	if c.MaxRooms <= 0 {
		c.MaxRooms = 100_000
	}
}

// maxPending bounds the changes kept for a room while it loads; past it the
// load is used once and not kept.
const maxPending = 256

// roomCache is a node's copy of each room's mutes and kicks it was asked
// about. A room is loaded once (load), then moved by changes (this node's
// own at once, other nodes' from the bus); a change that does not follow
// the copy, a bus resync, MaxAge or Idle drop it, and the next check loads
// it again.
type roomCache struct {
	cfg  CacheConfig
	load func(ctx context.Context, room string) (*roomState, error)
	now  func() time.Time

	mu      sync.Mutex
	rooms   map[string]*cacheEntry // guarded by mu
	sweepAt time.Time              // guarded by mu
}

// cacheEntry is one room, loading (st nil until ready is closed) or loaded.
type cacheEntry struct {
	ready    chan struct{}
	err      error      // the load's error; set before ready is closed
	st       *roomState // guarded by roomCache.mu once loaded
	pending  []change   // changes that arrived while loading; guarded by mu
	overflow bool       // pending overflowed; guarded by mu
	loadedAt time.Time
	used     time.Time // guarded by mu
}

func newRoomCache(cfg CacheConfig, load func(ctx context.Context, room string) (*roomState, error)) *roomCache {
	cfg.defaults()
	return &roomCache{cfg: cfg, load: load, now: time.Now, rooms: map[string]*cacheEntry{}}
}

// active reports whether user has a mute or kick (kind) in room now,
// loading the room first if this node has no copy of it.
func (c *roomCache) active(ctx context.Context, room string, kind byte, user string) (bool, error) {
	c.mu.Lock()
	now := c.now()
	c.sweepLocked(now)
	e := c.rooms[room]
	if e != nil && e.st != nil && now.Sub(e.loadedAt) >= c.cfg.MaxAge {
		delete(c.rooms, room)
		e = nil
	}
	switch {
	case e == nil && len(c.rooms) >= c.cfg.MaxRooms: // full: read through
		c.mu.Unlock()
		st, err := c.load(ctx, room)
		if err != nil {
			return false, err
		}
		return st.active(kind, user, now.UnixMilli()), nil
	case e == nil:
		e = &cacheEntry{ready: make(chan struct{})}
		c.rooms[room] = e
		c.mu.Unlock()
		c.fill(ctx, room, e)
	case e.st == nil:
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	default:
		defer c.mu.Unlock()
		e.used = now
		return e.st.active(kind, user, now.UnixMilli()), nil
	}
	if e.err != nil {
		return false, e.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e.used = now
	return e.st.active(kind, user, now.UnixMilli()), nil
}

// fill loads e and applies the changes that arrived meanwhile. A load that
// a resync, a missed change or an overflow overtook answers the checks
// waiting for it but is not kept.
func (c *roomCache) fill(ctx context.Context, room string, e *cacheEntry) {
	st, err := c.load(ctx, room)
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(e.ready)
	if err != nil {
		e.err = err
		c.drop(room, e)
		return
	}
	keep := !e.overflow
	for _, ch := range e.pending {
		keep = st.apply(ch) && keep
	}
	e.pending = nil
	e.st, e.loadedAt, e.used = st, c.now(), c.now()
	if !keep {
		c.drop(room, e)
	}
}

// drop forgets room if e is still its entry. Callers hold mu.
func (c *roomCache) drop(room string, e *cacheEntry) {
	if c.rooms[room] == e {
		delete(c.rooms, room)
	}
}

// apply moves the room's copy, if this node has one, by ch.
func (c *roomCache) apply(room string, ch change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.rooms[room]
	switch {
	case e == nil:
	case e.st == nil && len(e.pending) < maxPending:
		e.pending = append(e.pending, ch)
	case e.st == nil:
		e.overflow = true
	case !e.st.apply(ch):
		delete(c.rooms, room)
	}
}

// reset forgets every room: the bus may have lost changes. Loads in flight
// still answer the checks waiting for them.
func (c *roomCache) reset() {
	c.mu.Lock()
	c.rooms = map[string]*cacheEntry{}
	c.mu.Unlock()
}

// sweepLocked drops idle rooms and ended mutes and kicks, at most once per
// Idle/4.
func (c *roomCache) sweepLocked(now time.Time) {
	if now.Before(c.sweepAt) {
		return
	}
	c.sweepAt = now.Add(c.cfg.Idle / 4)
	ms := now.UnixMilli()
	for room, e := range c.rooms {
		switch {
		case e.st == nil:
		case now.Sub(e.used) >= c.cfg.Idle:
			delete(c.rooms, room)
		default:
			e.st.prune(ms)
		}
	}
}

// size is the number of rooms cached (loaded or loading).
func (c *roomCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rooms)
}
