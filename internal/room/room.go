// Package room is the room registry: one anchor owns exactly one room (R1),
// each room has a stream key for publishing, and a lifecycle (idle → live →
// ended) driven by the media ingest. Records live in the SQL store; hot
// lookups (does this room exist, whose is it) are served from a small cache.
package room

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/errs"
	"roomcast/internal/store"
)

// Status values.
const (
	StatusIdle  = "idle"
	StatusLive  = "live"
	StatusEnded = "ended"
)

// Room is a room as the API shows it.
type Room struct {
	ID            string     `json:"id"`
	Title         string     `json:"title"`
	AnchorID      string     `json:"anchor_id"`
	StreamKey     string     `json:"stream_key,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	Status        string     `json:"status"`
	Live          bool       `json:"live"`
	LiveStartedAt *time.Time `json:"live_started_at,omitempty"`
	LiveEndedAt   *time.Time `json:"live_ended_at,omitempty"`
}

// Registry manages rooms.
type Registry struct {
	st       *store.Store
	log      *slog.Logger
	createMu sync.Mutex // serializes Create

	// now and load are time.Now and st.Room; tests in this package replace
	// them to step the clock and to count and hold database reads.
	now  func() time.Time
	load func(ctx context.Context, id string) (store.Room, error)

	mu      sync.RWMutex
	cache   map[string]cached  // by id; guarded by mu
	loading map[string]*flight // by id: the one database read in progress; guarded by mu
}

// flight is one database read of a room that concurrent lookups share: a
// hot room's record going stale costs SQL one query, not one per request.
type flight struct {
	done chan struct{} // closed when r and err are set
	r    store.Room
	err  error
}

type cached struct {
	r  store.Room
	at time.Time // when it was read
	// retry is when to ask SQL again after a failed refresh: meanwhile the
	// record is served as it is, so an unreachable database costs hot
	// lookups (sends, polls, viewers) neither a failure nor a wait.
	retry time.Time
}

// dbRetry spaces refresh attempts of a record while SQL fails.
const dbRetry = time.Second

// dbErr turns a store failure into a 503 db_unavailable (errors that are
// already *errs.Error pass through).
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	return &errs.Error{Code: errs.DBUnavailable, Message: "the database is unreachable: rooms cannot be created or changed right now, try again"}
}

// cacheTTL bounds how stale a cached record may be (other nodes may change it).
const cacheTTL = 2 * time.Second

// New returns a Registry on st.
func New(st *store.Store, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{st: st, log: log, now: time.Now, load: st.Room, cache: map[string]cached{}, loading: map[string]*flight{}}
}

// ValidID reports whether id is an acceptable room id (slug):
// ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$, checked by hand (every poll checks it).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 || id[0] == '_' || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func view(r store.Room, withKey bool) Room {
	v := Room{ID: r.ID, Title: r.Title, AnchorID: r.AnchorID, CreatedAt: r.CreatedAt.UTC(), Status: r.Status, Live: r.Status == StatusLive}
	if withKey {
		v.StreamKey = r.StreamKey
	}
	if !r.LiveStartedAt.IsZero() {
		t := r.LiveStartedAt.UTC()
		v.LiveStartedAt = &t
	}
	if !r.LiveEndedAt.IsZero() {
		t := r.LiveEndedAt.UTC()
		v.LiveEndedAt = &t
	}
	return v
}

// NewStreamKey returns a fresh random stream key.
func NewStreamKey() string { return "rk_" + auth.RandomHex(16) }

// Create creates anchor's room, or returns the one it already has with
// created=false. id may be empty (generated).
func (g *Registry) Create(ctx context.Context, anchor, title, id string) (Room, bool, error) {
	// One create at a time on this node, so an anchor's concurrent creates
	// find the room the first one made; across nodes the database's unique
	// index on anchor_id makes the later insert conflict (store.AnchorsUnique).
	g.createMu.Lock()
	defer g.createMu.Unlock()
	if r, err := g.st.RoomByAnchor(ctx, anchor); err == nil {
		return view(r, true), false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return Room{}, false, dbErr(err)
	}
	title = strings.TrimSpace(title)
	if title == "" {
		return Room{}, false, errs.New(errs.BadRequest, "title is required")
	}
	if len([]rune(title)) > 100 {
		return Room{}, false, errs.New(errs.BadRequest, "title is longer than 100 characters")
	}
	if id == "" {
		id = "r" + auth.RandomHex(5)
	} else if !ValidID(id) {
		return Room{}, false, errs.New(errs.BadRequest, "id must be 1–64 letters, digits, - or _")
	}
	r := store.Room{ID: id, Title: title, AnchorID: anchor, StreamKey: NewStreamKey(), CreatedAt: time.Now(), Status: StatusIdle}
	if err := g.st.CreateRoom(ctx, r); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// Either the id is taken, or the same anchor raced us.
			if r2, err2 := g.st.RoomByAnchor(ctx, anchor); err2 == nil {
				return view(r2, true), false, nil
			}
			return Room{}, false, errs.New(errs.Conflict, "room id "+id+" is taken")
		}
		return Room{}, false, dbErr(err)
	}
	g.put(r)
	return view(r, true), true, nil
}

// Ensure returns the room named id, creating it (livego-style, the anchor is
// "livego:"+id) if needed.
func (g *Registry) Ensure(ctx context.Context, id string) (Room, error) {
	if !ValidID(id) {
		return Room{}, errs.New(errs.BadRequest, "room name must be 1–64 letters, digits, - or _")
	}
	if r, err := g.st.Room(ctx, id); err == nil {
		return view(r, true), nil
	}
	r := store.Room{ID: id, Title: id, AnchorID: "livego:" + id, StreamKey: NewStreamKey(), CreatedAt: time.Now(), Status: StatusIdle}
	if err := g.st.CreateRoom(ctx, r); err != nil && !errors.Is(err, store.ErrConflict) {
		return Room{}, dbErr(err)
	}
	r2, err := g.st.Room(ctx, id)
	if err != nil {
		return Room{}, dbErr(err)
	}
	g.put(r2)
	return view(r2, true), nil
}

// Get returns a room (without its key unless withKey).
func (g *Registry) Get(ctx context.Context, id string, withKey bool) (Room, error) {
	r, err := g.get(ctx, id)
	if err != nil {
		return Room{}, dbErr(err)
	}
	return view(r, withKey), nil
}

// Exists reports whether room id exists, from the cache when fresh.
func (g *Registry) Exists(ctx context.Context, id string) (bool, error) {
	_, err := g.get(ctx, id)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return err == nil, err
}

var errNotFound = errs.New(errs.RoomNotFound, "no such room")

// get returns room id's record: from the cache while it is fresh (or while
// SQL is failing, see cached.retry), else from SQL. Only one read per room is
// in flight at a time: while it runs, lookups of a known room are answered
// with the record they had (stale by at most the read's duration), and
// lookups of an unknown one wait for that read instead of starting their own.
func (g *Registry) get(ctx context.Context, id string) (store.Room, error) {
	for {
		g.mu.RLock()
		c, ok := g.cache[id]
		g.mu.RUnlock()
		if ok && g.fresh(c) {
			return c.r, nil
		}
		if !ValidID(id) {
			return store.Room{}, errNotFound
		}
		g.mu.Lock()
		if cur, still := g.cache[id]; still && g.fresh(cur) { // refreshed meanwhile
			g.mu.Unlock()
			return cur.r, nil
		}
		if f := g.loading[id]; f != nil {
			g.mu.Unlock()
			if ok { // a known room never waits for another's refresh
				return c.r, nil
			}
			select {
			case <-f.done:
			case <-ctx.Done():
				return store.Room{}, dbErr(ctx.Err())
			}
			if isCtxErr(f.err) && ctx.Err() == nil {
				continue // the reader gave up (its client left): read again for this one
			}
			return f.r, dbErr(f.err)
		}
		f := &flight{done: make(chan struct{})}
		g.loading[id] = f
		g.mu.Unlock()
		f.r, f.err = g.read(ctx, id, c, ok)
		g.mu.Lock()
		delete(g.loading, id)
		g.mu.Unlock()
		close(f.done)
		return f.r, dbErr(f.err)
	}
}

func (g *Registry) fresh(c cached) bool {
	now := g.now()
	return now.Sub(c.at) < cacheTTL || now.Before(c.retry)
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// read asks SQL for room id and updates the cache; c is the cached record
// (ok: there is one), served on if SQL fails.
func (g *Registry) read(ctx context.Context, id string, c cached, ok bool) (store.Room, error) {
	qctx, cancel := ctx, context.CancelFunc(func() {})
	if ok { // a known room never waits long for a refresh
		qctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	}
	r, err := g.load(qctx, id)
	cancel()
	if errors.Is(err, store.ErrNotFound) {
		g.forget(id)
		return store.Room{}, errNotFound
	}
	if err != nil {
		if ok && ctx.Err() == nil { // SQL is down: keep serving what we knew (issue 8)
			g.mu.Lock()
			if cur, still := g.cache[id]; still && cur.at == c.at {
				cur.retry = g.now().Add(dbRetry)
				g.cache[id] = cur
			}
			g.mu.Unlock()
			g.log.Debug("room: database unreachable, serving the cached record", "room", id, "err", err)
			return c.r, nil
		}
		if isCtxErr(err) && ctx.Err() != nil {
			return store.Room{}, err // the caller left; waiters read again
		}
		return store.Room{}, dbErr(err)
	}
	g.put(r)
	return r, nil
}

func (g *Registry) put(r store.Room) {
	g.mu.Lock()
	if len(g.cache) > 100000 {
		g.cache = map[string]cached{}
	}
	g.cache[r.ID] = cached{r: r, at: g.now()}
	g.mu.Unlock()
}

func (g *Registry) forget(id string) {
	g.mu.Lock()
	delete(g.cache, id)
	g.mu.Unlock()
}

// List returns every room, newest first, without keys.
func (g *Registry) List(ctx context.Context) ([]Room, error) {
	rs, err := g.st.Rooms(ctx)
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]Room, 0, len(rs))
	for _, r := range rs {
		out = append(out, view(r, false))
	}
	return out, nil
}

// IDs returns every room id (for broadcasts).
func (g *Registry) IDs(ctx context.Context) ([]string, error) {
	rs, err := g.st.Rooms(ctx)
	if err != nil {
		return nil, dbErr(err)
	}
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids, nil
}

// ResetKey gives room id a new stream key and returns it.
func (g *Registry) ResetKey(ctx context.Context, id string) (string, error) {
	key := NewStreamKey()
	if err := g.st.SetStreamKey(ctx, id, key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", errNotFound
		}
		return "", dbErr(err)
	}
	g.forget(id)
	return key, nil
}

// Delete removes room id.
func (g *Registry) Delete(ctx context.Context, id string) error {
	if err := g.st.DeleteRoom(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errNotFound
		}
		return dbErr(err)
	}
	g.forget(id)
	return nil
}

// ByStreamKey returns the id of the room whose key is key.
func (g *Registry) ByStreamKey(ctx context.Context, key string) (string, error) {
	if key == "" || len(key) > 128 {
		return "", errs.New(errs.Forbidden, "bad stream key")
	}
	r, err := g.st.RoomByKey(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return "", errs.New(errs.Forbidden, "unknown stream key")
	}
	if err != nil {
		return "", dbErr(err)
	}
	return r.ID, nil
}

// Lifecycle events: the names of a room's live stream starting and ending.
const (
	EventLiveStart = "live_start"
	EventLiveEnd   = "live_end"
)

// LiveEvent names the lifecycle event of a live stream starting (live=true)
// or ending.
func LiveEvent(live bool) string {
	if live {
		return EventLiveStart
	}
	return EventLiveEnd
}

// SetLive records the start (live=true) or end of a room's live stream.
// Announcing it to the room is the caller's (the app's) job.
func (g *Registry) SetLive(ctx context.Context, id string, live bool) error {
	if err := g.st.SetLive(ctx, id, live, time.Now()); err != nil {
		return fmt.Errorf("room %s: set live=%v: %w", id, live, err)
	}
	g.forget(id)
	return nil
}
