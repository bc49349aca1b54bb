package presence

import (
	"context"
	"sync"
	"time"
)

// local is what both presences keep in this node's memory: each room's
// sessions under one lock. Join, Touch and Leave are the same for both;
// what a join or a leave adds (a peak, watch time to write) is the room's
// (localRoom).
type local[R localRoom] struct {
	now     func() time.Time
	newRoom func() R

	mu    sync.Mutex
	rooms map[string]R // guarded by mu
}

// localRoom is one room's state on this node.
type localRoom interface {
	table() sessions
	// joined follows a join; changed: the session is new or its member
	// changed.
	joined(changed bool)
	// left follows a leave of member m, who stayed secs seconds.
	left(m Member, secs int64)
}

func newLocal[R localRoom](newRoom func() R) local[R] {
	return local[R]{now: time.Now, newRoom: newRoom, rooms: map[string]R{}}
}

func (l *local[R]) roomLocked(id string) R {
	r, ok := l.rooms[id]
	if !ok {
		r = l.newRoom()
		l.rooms[id] = r
	}
	return r
}

func (l *local[R]) join(room string, m Member, polling bool) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.roomLocked(room)
	isNew, changed := r.table().join(m, polling, now)
	r.joined(changed)
	return isNew
}

// Join implements Presence.
func (l *local[R]) Join(_ context.Context, room string, m Member) (bool, error) {
	return l.join(room, m, false), nil
}

// Touch implements Presence.
func (l *local[R]) Touch(_ context.Context, room string, m Member) (bool, error) {
	return l.join(room, m, true), nil
}

// Leave implements Presence.
func (l *local[R]) Leave(_ context.Context, room, sess string) error {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.rooms[room]; ok {
		leaveLocked(r, sess, now)
	}
	return nil
}

// Local lists the identified users this node holds in room (WebSocket
// connections and polling sessions with a token) that arrived at or before
// t (zero t: all), one entry per user. The quiz enrolls its players from it
// (issue 12): each node knows only its own sessions.
func (l *local[R]) Local(room string, t time.Time) []Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.rooms[room]; ok {
		return r.table().users(t)
	}
	return nil
}

// leaveLocked removes sess from r as of at.
func leaveLocked[R localRoom](r R, sess string, at time.Time) {
	if m, secs, ok := r.table().leave(sess, at); ok {
		r.left(m, secs)
	}
}

// expireLocked removes r's polling sessions not seen for ttl, as of when
// they were last seen.
func expireLocked[R localRoom](r R, ttl time.Duration, now time.Time) {
	for sid, s := range r.table() {
		if s.polling && now.Sub(s.seen) > ttl {
			leaveLocked(r, sid, s.seen)
		}
	}
}

type session struct {
	m       Member
	polling bool
	seen    time.Time
}

// sessions is one room's sessions on this node.
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

// users returns the distinct identified users of the sessions that arrived
// at or before t (zero t: all).
func (ss sessions) users(t time.Time) []Member {
	seen := make(map[string]bool, len(ss))
	var out []Member
	for _, s := range ss {
		if s.m.UserID == "" || seen[s.m.UserID] || (!t.IsZero() && s.m.Since.After(t)) {
			continue
		}
		seen[s.m.UserID] = true
		out = append(out, s.m)
	}
	return out
}

// top sorts ms as an audience (SortAudience) and keeps at most limit (all if
// limit ≤ 0).
func top(ms []Member, limit int) []Member {
	SortAudience(ms)
	if limit > 0 && len(ms) > limit {
		ms = ms[:limit]
	}
	return ms
}

// addWatch adds secs of m's watch time to w (by user id).
func addWatch(w map[string]*Watch, m Member, secs int64) {
	cur := w[m.UserID]
	if cur == nil {
		cur = &Watch{UserID: m.UserID, Name: m.Name}
		w[m.UserID] = cur
	}
	cur.Seconds += secs
}

// every calls fn each d until stop is closed, then closes done.
func every(d time.Duration, stop <-chan struct{}, done chan<- struct{}, fn func()) {
	defer close(done)
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			fn()
		}
	}
}
