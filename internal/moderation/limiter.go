package moderation

import (
	"sync"
	"time"
)

// Limiter is a per-user token bucket held in this process: capacity n,
// refilled at n/per, so a user may burst n sends and then one every per/n.
// It costs no Redis command, which is why a cluster node uses it by default
// (issue 14, `--rate-limit-scope node`): a user's connection lives on one
// node, and a user who sends through k nodes at once gets at most k times
// the rate. Memory stays bounded by the users who sent within the last
// window: a bucket idle for a window is full again and is dropped.
type Limiter struct {
	n   int           // sends per window; 0 = unlimited
	per time.Duration // window
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket // guarded by mu
	sweepAt time.Time          // guarded by mu
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter returns a Limiter allowing n sends per window per user (n ≤ 0
// or per ≤ 0: unlimited).
func NewLimiter(n int, per time.Duration) *Limiter {
	return &Limiter{n: n, per: per, now: time.Now, buckets: map[string]*bucket{}}
}

// Allow consumes one send of user's rate; if over, it returns false and how
// long until the next send is allowed (rounded up to the millisecond, so a
// client that waits exactly this long is allowed).
func (l *Limiter) Allow(user string) (bool, time.Duration) {
	if l.n <= 0 || l.per <= 0 {
		return true, 0
	}
	now := l.now()
	rate := float64(l.n) / l.per.Seconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	b := l.buckets[user]
	if b == nil {
		b = &bucket{tokens: float64(l.n), at: now}
		l.buckets[user] = b
	}
	b.tokens = min(float64(l.n), b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1-b.tokens)/rate*float64(time.Second)).Truncate(time.Millisecond) + time.Millisecond
	return false, wait
}

// Len returns how many buckets the Limiter holds.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// sweepLocked drops the buckets idle for a window (they are full again), at
// most once a window (at least 10 s apart), so a sweep's cost is spread
// over the sends of a window.
func (l *Limiter) sweepLocked(now time.Time) {
	if now.Before(l.sweepAt) {
		return
	}
	l.sweepAt = now.Add(max(l.per, 10*time.Second))
	for u, b := range l.buckets {
		if now.Sub(b.at) >= l.per {
			delete(l.buckets, u)
		}
	}
}
