// Package moderation holds the state that decides whether a user may speak or
// enter: per-user send rate limits, mutes and kicks per room, and the keyword
// filter (R23). The in-memory State serves one node; a Redis one shares it
// across nodes.
package moderation

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode"
)

// State is moderation state that may be shared across nodes.
type State interface {
	// Allow consumes one send of user's rate; if over, it returns false and
	// how long until the next send is allowed.
	Allow(ctx context.Context, user string) (bool, time.Duration, error)
	// Mute silences user in room until the given time.
	Mute(ctx context.Context, room, user string, until time.Time) error
	Unmute(ctx context.Context, room, user string) error
	// Muted reports whether user is muted in room.
	Muted(ctx context.Context, room, user string) (bool, error)
	// Kick bars user from room until the given time.
	Kick(ctx context.Context, room, user string, until time.Time) error
	// Kicked reports whether user is barred from room.
	Kicked(ctx context.Context, room, user string) (bool, error)
	Close() error
}

// Memory is the single-node State.
type Memory struct {
	rate *Limiter
	now  func() time.Time

	mu      sync.Mutex
	mutes   map[string]time.Time // room\x00user → until; guarded by mu
	kicks   map[string]time.Time // room\x00user → until; guarded by mu
	sweepAt time.Time            // guarded by mu
}

var _ State = (*Memory)(nil)

// NewMemory returns a State allowing n sends per window per user (n ≤ 0:
// unlimited).
func NewMemory(n int, per time.Duration) *Memory {
	return &Memory{rate: NewLimiter(n, per), now: time.Now, mutes: map[string]time.Time{}, kicks: map[string]time.Time{}}
}

// Allow implements State with a token bucket of capacity n refilled at
// n/per (a Limiter), so a user may burst n sends and then one every per/n.
func (m *Memory) Allow(_ context.Context, user string) (bool, time.Duration, error) {
	ok, wait := m.rate.Allow(user)
	return ok, wait, nil
}

// sweepLocked drops expired mutes and kicks, at most once every 10 s, so
// memory stays bounded by the ones in force.
func (m *Memory) sweepLocked(now time.Time) {
	if now.Before(m.sweepAt) {
		return
	}
	m.sweepAt = now.Add(10 * time.Second)
	for k, t := range m.mutes {
		if now.After(t) {
			delete(m.mutes, k)
		}
	}
	for k, t := range m.kicks {
		if now.After(t) {
			delete(m.kicks, k)
		}
	}
}

func key(room, user string) string { return room + "\x00" + user }

// Mute implements State.
func (m *Memory) Mute(_ context.Context, room, user string, until time.Time) error {
	m.set(m.mutes, room, user, until)
	return nil
}

// Unmute implements State.
func (m *Memory) Unmute(_ context.Context, room, user string) error {
	m.mu.Lock()
	delete(m.mutes, key(room, user))
	m.mu.Unlock()
	return nil
}

// Muted implements State.
func (m *Memory) Muted(_ context.Context, room, user string) (bool, error) {
	return m.active(m.mutes, room, user), nil
}

// Kick implements State.
func (m *Memory) Kick(_ context.Context, room, user string, until time.Time) error {
	m.set(m.kicks, room, user, until)
	return nil
}

// Kicked implements State.
func (m *Memory) Kicked(_ context.Context, room, user string) (bool, error) {
	return m.active(m.kicks, room, user), nil
}

// set records a mute or kick (in table) of user in room until the given
// time.
func (m *Memory) set(table map[string]time.Time, room, user string, until time.Time) {
	m.mu.Lock()
	m.sweepLocked(m.now())
	table[key(room, user)] = until
	m.mu.Unlock()
}

// active reports whether table holds a mute or kick of user in room that
// has not ended.
func (m *Memory) active(table map[string]time.Time, room, user string) bool {
	m.mu.Lock()
	until, ok := table[key(room, user)]
	m.mu.Unlock()
	return ok && m.now().Before(until)
}

// Close implements State.
func (m *Memory) Close() error { return nil }

// Filter checks text against blocked words, case-insensitively.
type Filter struct {
	words []string // lower-cased
	runes [][]rune // words as runes
	mask  bool
}

// NewFilter returns a Filter for the comma-separated words; mask selects
// masking (each blocked word replaced by *) instead of rejection.
func NewFilter(words string, mask bool) *Filter {
	f := &Filter{mask: mask}
	for _, w := range strings.Split(words, ",") {
		if w = strings.ToLower(strings.TrimSpace(w)); w != "" {
			f.words = append(f.words, w)
			f.runes = append(f.runes, []rune(w))
		}
	}
	return f
}

// Check returns the text to store and whether it is acceptable. In mask mode
// it is always acceptable, with each blocked word's characters replaced by *.
// Matching is per rune on lower-cased text, so masking never changes the
// case or length of the rest of the message.
func (f *Filter) Check(text string) (string, bool) {
	if len(f.words) == 0 || text == "" {
		return text, true
	}
	orig := []rune(text)
	lower := make([]rune, len(orig))
	for i, r := range orig {
		lower[i] = unicode.ToLower(r)
	}
	hit := false
	for _, w := range f.runes {
		for i := 0; i+len(w) <= len(lower); i++ {
			if !equalRunes(lower[i:i+len(w)], w) {
				continue
			}
			if !f.mask {
				return text, false
			}
			hit = true
			for j := i; j < i+len(w); j++ {
				orig[j], lower[j] = '*', '*'
			}
			i += len(w) - 1
		}
	}
	if !hit {
		return text, true
	}
	return string(orig), true
}

func equalRunes(a, b []rune) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
