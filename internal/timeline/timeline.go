// Package timeline is the sequenced per-room message store: Append gives each
// message of a room the previous seq + 1 and stores it in the same atomic
// step, Range reads from a cursor. The recent window of a room is bounded by
// count and age (R9). The in-memory implementation lives here; a Redis one
// sits beside it and must pass the same contract test (contract_test.go).
package timeline

import (
	"context"
	"errors"
	"time"

	"roomcast/internal/message"
)

// Timeline stores messages per room.
//
// Contract (R11): seq assignment, storing and notifying are one atomic step
// per room. Once Append has returned seq N for a room, every later Range of
// that room whose head is ≥ N includes N (unless it was trimmed), and the
// Notify hook has been called for 1..N in seq order. Concurrent appends to
// one room therefore can never make a reader paging by cursor skip a
// message.
type Timeline interface {
	// Append assigns m.Seq (and m.TS if zero), seals m and stores it.
	Append(ctx context.Context, m *message.Message) (uint64, error)
	// Range returns up to limit messages of room with seq > after, in
	// ascending seq order, and the room's head (the last assigned seq).
	// Messages already trimmed are simply absent: first tells the seq of
	// the oldest message still retained (head+1 when none are).
	Range(ctx context.Context, room string, after uint64, limit int) (msgs []*message.Message, head, first uint64, err error)
	// Head returns the last assigned seq of room (0 for a room with none).
	Head(ctx context.Context, room string) (uint64, error)
	// Close releases resources.
	Close() error
}

// Notify is called by implementations after a message is stored, in seq
// order per room. It must not block for long.
type Notify func(m *message.Message)

// Retention bounds each room's recent window. Zero values mean the defaults.
type Retention struct {
	MaxCount int           // messages kept per room; default 10,000
	MaxAge   time.Duration // default 10 minutes
}

// Defaults fills zero fields.
func (r Retention) Defaults() Retention {
	if r.MaxCount <= 0 {
		r.MaxCount = 10000
	}
	if r.MaxAge <= 0 {
		r.MaxAge = 10 * time.Minute
	}
	return r
}

// ErrUnavailable is returned (wrapped) when the backing store cannot be
// reached; nothing was stored.
var ErrUnavailable = errors.New("timeline unavailable")
