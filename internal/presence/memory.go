package presence

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Memory is the single-node Presence.
type Memory struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	rooms map[string]*memRoom // guarded by mu

	stop chan struct{}
	done chan struct{}
}

var _ Presence = (*Memory)(nil)

type memRoom struct {
	sessions sessions
	watch    map[string]*Watch // by user id; bounded by maxWatchers
	peak     int
}

type session struct {
	m       Member
	polling bool
	seen    time.Time
}

// sessions is one room's sessions on this node; both the memory and the
// Redis presence keep them the same way.
type sessions map[string]*session

// join adds m's session or refreshes it. It reports whether the session is
// new and whether its member changed (a connection identified later, by a
// WebSocket auth frame, keeps its arrival time).
func (ss sessions) join(m Member, polling bool, now time.Time) (isNew, changed bool) {
	if m.Since.IsZero() {
		m.Since = now
	}
	if s, ok := ss[m.Session]; ok {
		s.seen = now
		if m.UserID != "" && s.m.UserID != m.UserID {
			m.Since = s.m.Since
			s.m = m
			return false, true
		}
		return false, false
	}
	ss[m.Session] = &session{m: m, polling: polling, seen: now}
	return true, true
}

// leave removes sess and returns its member and the whole seconds it stayed.
func (ss sessions) leave(sess string, at time.Time) (Member, int64, bool) {
	s, ok := ss[sess]
	if !ok {
		return Member{}, 0, false
	}
	delete(ss, sess)
	return s.m, int64(at.Sub(s.m.Since).Round(time.Second) / time.Second), true
}

// maxWatchers bounds the per-room watch-time table; beyond it the users with
// the least watch time are forgotten.
const maxWatchers = 100000

// NewMemory returns an in-memory Presence. Polling sessions that have not
// been touched for ttl are treated as gone. Close stops its sweeper.
func NewMemory(ttl time.Duration) *Memory {
	p := &Memory{ttl: ttl, now: time.Now, rooms: map[string]*memRoom{}, stop: make(chan struct{}), done: make(chan struct{})}
	go p.sweeper()
	return p
}

func (p *Memory) sweeper() {
	defer close(p.done)
	t := time.NewTicker(max(p.ttl/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.sweep()
		}
	}
}

func (p *Memory) sweep() {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, r := range p.rooms {
		for sid, s := range r.sessions {
			if s.polling && now.Sub(s.seen) > p.ttl {
				r.leaveLocked(sid, s.seen)
			}
		}
		if len(r.sessions) == 0 && len(r.watch) == 0 {
			delete(p.rooms, id)
		}
	}
}

func (p *Memory) roomLocked(id string) *memRoom {
	r := p.rooms[id]
	if r == nil {
		r = &memRoom{sessions: map[string]*session{}, watch: map[string]*Watch{}}
		p.rooms[id] = r
	}
	return r
}

func (p *Memory) join(room string, m Member, polling bool) bool {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.roomLocked(room)
	isNew, _ := r.sessions.join(m, polling, now)
	r.peak = max(r.peak, len(r.sessions))
	return isNew
}

// Join implements Presence.
func (p *Memory) Join(_ context.Context, room string, m Member) (bool, error) {
	return p.join(room, m, false), nil
}

// Touch implements Presence.
func (p *Memory) Touch(_ context.Context, room string, m Member) (bool, error) {
	return p.join(room, m, true), nil
}

// Leave implements Presence.
func (p *Memory) Leave(_ context.Context, room, sess string) error {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.rooms[room]; r != nil {
		r.leaveLocked(sess, now)
	}
	return nil
}

func (r *memRoom) leaveLocked(sess string, at time.Time) {
	m, secs, ok := r.sessions.leave(sess, at)
	if !ok || m.UserID == "" {
		return
	}
	w := r.watch[m.UserID]
	if w == nil {
		if len(r.watch) >= maxWatchers {
			r.evictLocked()
		}
		w = &Watch{UserID: m.UserID, Name: m.Name}
		r.watch[m.UserID] = w
	}
	w.Seconds += secs
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
	p.mu.Lock()
	r := p.rooms[room]
	var all []Member
	if r != nil {
		seen := make(map[string]bool, len(r.sessions))
		for _, s := range r.sessions {
			if s.m.UserID == "" || seen[s.m.UserID] {
				continue
			}
			seen[s.m.UserID] = true
			all = append(all, s.m)
		}
	}
	p.mu.Unlock()
	SortAudience(all)
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all, nil
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
