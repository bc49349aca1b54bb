// Package rankings keeps a room's gift rankings (issue 13, G2): the top
// senders by gift value for the live session, the day (UTC) and all time,
// added to as each gift is sent — never computed by scanning the archive.
// The memory Board serves one node; the Redis Board (sorted sets, one Lua
// script per gift) serves a cluster, so every node answers the same. Both
// pass one contract suite.
package rankings

import (
	"context"
	"sort"
	"sync"
	"time"

	"roomcast/internal/errs"
)

// Periods of a ranking.
const (
	Session = "session" // the room's current (or last) live session
	Day     = "day"     // today, UTC
	All     = "all"     // since the room's first gift
)

// Limits of a query.
const (
	DefaultLimit = 10
	MaxLimit     = 100
)

// Gift is one gift sent, as the board counts it.
type Gift struct {
	Room       string
	Session    string // the live session, "" when the room was not live
	User       string
	Name       string
	ValueCents int64 // value of the whole send (unit value × count)
	Count      int64 // gift items
	At         time.Time
}

// Entry is one sender in a ranking.
type Entry struct {
	User       string `json:"user"`
	Name       string `json:"name"`
	ValueCents int64  `json:"value_cents"`
	Gifts      int64  `json:"gifts"`
}

// Board keeps the rankings.
type Board interface {
	Add(ctx context.Context, g Gift) error
	// Top lists up to limit senders of period in room at now, by value
	// (ties: user id, descending bytes).
	Top(ctx context.Context, room, period string, limit int, now time.Time) ([]Entry, error)
}

// CheckQuery validates a query's period ("" is all) and limit (0 is the default).
func CheckQuery(period string, limit int) (string, int, error) {
	switch period {
	case "":
		period = All
	case Session, Day, All:
	default:
		return "", 0, errs.New(errs.BadRequest, "period must be session, day or all")
	}
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 1 || limit > MaxLimit {
		return "", 0, errs.New(errs.BadRequest, "limit must be 1–100")
	}
	return period, limit, nil
}

func dayOf(t time.Time) string { return t.UTC().Format("20060102") }

// Memory is the one-node Board. It keeps each room's all-time ranking, its
// last two days and its last four sessions.
type Memory struct {
	mu    sync.Mutex
	rooms map[string]*memRoom // guarded by mu
}

type memRoom struct {
	names    map[string]string
	boards   map[string]map[string]*Entry // "all", "d:YYYYMMDD", "s:SID" → user → entry
	sessions []string                     // oldest first; the last is current
}

// NewMemory returns an empty memory Board.
func NewMemory() *Memory { return &Memory{rooms: map[string]*memRoom{}} }

var _ Board = (*Memory)(nil)

// Add implements Board.
func (m *Memory) Add(_ context.Context, g Gift) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[g.Room]
	if r == nil {
		r = &memRoom{names: map[string]string{}, boards: map[string]map[string]*Entry{}}
		m.rooms[g.Room] = r
	}
	r.names[g.User] = g.Name
	keys := []string{All, "d:" + dayOf(g.At)}
	for k := range r.boards { // forget days before yesterday
		if len(k) == 10 && k[:2] == "d:" && k[2:] < dayOf(g.At.Add(-24*time.Hour)) {
			delete(r.boards, k)
		}
	}
	if g.Session != "" {
		if n := len(r.sessions); n == 0 || r.sessions[n-1] != g.Session {
			r.sessions = append(r.sessions, g.Session)
			if len(r.sessions) > 4 {
				delete(r.boards, "s:"+r.sessions[0])
				r.sessions = r.sessions[1:]
			}
		}
		keys = append(keys, "s:"+g.Session)
	}
	for _, k := range keys {
		b := r.boards[k]
		if b == nil {
			b = map[string]*Entry{}
			r.boards[k] = b
		}
		e := b[g.User]
		if e == nil {
			e = &Entry{User: g.User}
			b[g.User] = e
		}
		e.ValueCents += g.ValueCents
		e.Gifts += g.Count
	}
	return nil
}

// Top implements Board.
func (m *Memory) Top(_ context.Context, room, period string, limit int, now time.Time) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Entry{}
	r := m.rooms[room]
	if r == nil {
		return out, nil
	}
	key := All
	switch period {
	case Day:
		key = "d:" + dayOf(now)
	case Session:
		if len(r.sessions) == 0 {
			return out, nil
		}
		key = "s:" + r.sessions[len(r.sessions)-1]
	}
	for _, e := range r.boards[key] {
		c := *e
		c.Name = r.names[c.User]
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ValueCents != out[j].ValueCents {
			return out[i].ValueCents > out[j].ValueCents
		}
		return out[i].User > out[j].User
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
