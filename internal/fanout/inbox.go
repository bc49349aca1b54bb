package fanout

import (
	"sync"
	"time"

	"roomcast/internal/message"
)

// inboxes keep each user's recent user-scoped messages on this node, so a
// user who polls (no WebSocket) still receives them. Every node receives
// every user-scoped message (bus.Users), so a poller may move between nodes.
// Bounded: inboxSize messages per user, maxInboxes users, inboxTTL idle.
type inboxes struct {
	mu sync.Mutex
	m  map[string]*inbox // guarded by mu
}

type inbox struct {
	msgs    []*message.Message // oldest first, at most inboxSize
	touched time.Time
}

const (
	inboxSize  = 32
	maxInboxes = 100000
	inboxTTL   = 5 * time.Minute
)

func (ib *inboxes) add(user string, m *message.Message, now time.Time) {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	if ib.m == nil {
		ib.m = map[string]*inbox{}
	}
	b := ib.m[user]
	if b == nil {
		if len(ib.m) >= maxInboxes {
			ib.sweepLocked(now, true)
		}
		b = &inbox{}
		ib.m[user] = b
	}
	if len(b.msgs) == inboxSize {
		copy(b.msgs, b.msgs[1:])
		b.msgs = b.msgs[:inboxSize-1]
	}
	b.msgs = append(b.msgs, m)
	b.touched = now
}

// since returns user's messages with ts > after (oldest first).
func (ib *inboxes) since(user string, after int64) []*message.Message {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	b := ib.m[user]
	if b == nil {
		return nil
	}
	var out []*message.Message
	for _, m := range b.msgs {
		if m.TS > after {
			out = append(out, m)
		}
	}
	return out
}

// sweep forgets idle inboxes.
func (ib *inboxes) sweep(now time.Time) {
	ib.mu.Lock()
	ib.sweepLocked(now, false)
	ib.mu.Unlock()
}

// sweepLocked drops inboxes idle past inboxTTL; when full it drops the
// oldest half as well so a flood of users cannot grow it without bound.
func (ib *inboxes) sweepLocked(now time.Time, full bool) {
	cutoff := now.Add(-inboxTTL)
	if full {
		cutoff = now.Add(-inboxTTL / 2)
	}
	for u, b := range ib.m {
		if b.touched.Before(cutoff) {
			delete(ib.m, u)
		}
	}
	if full && len(ib.m) >= maxInboxes { // still full: make room anyway
		n := 0
		for u := range ib.m {
			delete(ib.m, u)
			if n++; n >= maxInboxes/2 {
				break
			}
		}
	}
}
