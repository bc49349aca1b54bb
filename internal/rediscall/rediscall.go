// Package rediscall names the hook through which every Redis seam (timeline,
// bus, presence, likes, moderation, quiz, placement) runs its round trips, so
// that the app wraps them all in one place: metrics, a circuit breaker and a
// timeout.
package rediscall

import "context"

// Func runs one Redis round trip named op carrying n commands: it calls do,
// which sends them, with a context it may bound, and returns do's error or
// its own (an open breaker, a timeout).
type Func func(ctx context.Context, op string, n int, do func(context.Context) error) error

// Do runs do through f; a nil Func runs do directly.
func (f Func) Do(ctx context.Context, op string, n int, do func(context.Context) error) error {
	if f == nil {
		return do(ctx)
	}
	return f(ctx, op, n, do)
}
