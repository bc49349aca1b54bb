package presence

import (
	"context"
	"sort"
	"time"
)

// Memory is the single-node Presence.
type Memory struct {
	ttl time.Duration
	local[*memRoom]

	stop chan struct{}
	done chan struct{}
}

var _ Presence = (*Memory)(nil)

type memRoom struct {
	sessions sessions
	watch    map[string]*Watch // by user id; bounded by maxWatchers
	peak     int
}

func (r *memRoom) table() sessions { return r.sessions }

func (r *memRoom) joined(bool) { r.peak = max(r.peak, len(r.sessions)) }

func (r *memRoom) left(m Member, secs int64) {
	if m.UserID == "" {
		return
	}
	if r.watch[m.UserID] == nil && len(r.watch) >= maxWatchers {
		r.evictLocked()
	}
	addWatch(r.watch, m, secs)
}

// maxWatchers bounds the per-room watch-time table; beyond it the users with
// the least watch time are forgotten.
const maxWatchers = 100000

// NewMemory returns an in-memory Presence. Polling sessions that have not
// been touched for ttl are treated as gone. Close stops its sweeper.
func NewMemory(ttl time.Duration) *Memory {
	p := &Memory{ttl: ttl, stop: make(chan struct{}), done: make(chan struct{}),
		local: newLocal(func() *memRoom { return &memRoom{sessions: sessions{}, watch: map[string]*Watch{}} })}
	go every(max(p.ttl/4, 100*time.Millisecond), p.stop, p.done, p.sweep)
	return p
}

func (p *Memory) sweep() {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, r := range p.rooms {
		expireLocked(r, p.ttl, now)
		if len(r.sessions) == 0 && len(r.watch) == 0 {
			delete(p.rooms, id)
		}
	}
}

func (r *memRoom) evictLocked() {
	var minID string
	var minS int64 = -1
	for id, w := range r.watch {
		if minS < 0 || w.Seconds < minS {
			minID, minS = id, w.Seconds
		}
	}
	delete(r.watch, minID)
}

// Count implements Presence.
func (p *Memory) Count(_ context.Context, room string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.rooms[room]; r != nil {
		return len(r.sessions), nil
	}
	return 0, nil
}

// Audience implements Presence: identified users only, one entry per user,
// highest level first, then longest present.
func (p *Memory) Audience(_ context.Context, room string, limit int) ([]Member, error) {
	var all []Member
	p.mu.Lock()
	if r := p.rooms[room]; r != nil {
		all = r.sessions.users(time.Time{})
	}
	p.mu.Unlock()
	return top(all, limit), nil
}

// SortAudience orders members highest level first, then earliest arrival.
func SortAudience(ms []Member) {
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Level != ms[j].Level {
			return ms[i].Level > ms[j].Level
		}
		if !ms[i].Since.Equal(ms[j].Since) {
			return ms[i].Since.Before(ms[j].Since)
		}
		return ms[i].UserID < ms[j].UserID
	})
}

// Stats implements Presence.
func (p *Memory) Stats(_ context.Context, room string) (Stats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rooms[room]
	if r == nil {
		return Stats{TopWatchers: []Watch{}}, nil
	}
	st := Stats{Online: len(r.sessions), Peak: r.peak, Viewers: len(r.watch)}
	ws := make([]Watch, 0, len(r.watch))
	for _, w := range r.watch {
		st.TotalSeconds += w.Seconds
		ws = append(ws, *w)
	}
	if st.Viewers > 0 {
		st.AvgSeconds = float64(st.TotalSeconds) / float64(st.Viewers)
	}
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].Seconds != ws[j].Seconds {
			return ws[i].Seconds > ws[j].Seconds
		}
		return ws[i].UserID < ws[j].UserID
	})
	st.TopWatchers = ws[:min(len(ws), 20)]
	return st, nil
}

// Close implements Presence.
func (p *Memory) Close() error {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	return nil
}
