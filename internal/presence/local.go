package presence

import "time"

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

// Local lists the identified users this node holds in room (WebSocket
// connections and polling sessions with a token) that arrived at or before
// t (zero t: all), one entry per user. The quiz enrolls its players from it
// (issue 12): each node knows only its own sessions.
func (p *Memory) Local(room string, t time.Time) []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.rooms[room]; r != nil {
		return r.sessions.users(t)
	}
	return nil
}

// Local is Memory.Local for a cluster node: this node's sessions only.
func (p *Redis) Local(room string, t time.Time) []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.rooms[room]; r != nil {
		return r.sessions.users(t)
	}
	return nil
}
