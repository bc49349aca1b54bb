// Package timeline is the sequenced per-room message store: Append gives each
// message of a room the previous seq + 1 and stores it in the same atomic
// step, Range reads from a cursor. The recent window of a room is bounded by
// count and age (R9). The in-memory implementation lives here; a Redis one
// sits beside it and must pass the same contract test (contract_test.go).
package timeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
//
// Epochs (issue 8): a room's sequence lives in an epoch, a random id created
// together with the room's counter. A seq names one message only within its
// epoch: if the store loses the counter (a Redis restart without
// persistence, a failover that lost writes, a single node's memory after a
// restart), the next append starts a new epoch at seq 1, and a reader whose
// cursor carries the old epoch must start over instead of trusting the
// numbers. Epoch "" means the room has no counter yet; a cursor of 0 is the
// start of every epoch.
//
// Idempotency (issue 8): a message with a Dedupe key is appended at most
// once per key within DedupeTTL (in its epoch): a repeat returns
// ErrDuplicate, with m's Seq, ID, TS and Priority set to the first append's,
// atomically with the append that stored it.
type Timeline interface {
	// Append assigns m.Seq and m.Epoch (and m.TS if zero), seals m and
	// stores it; with m.Dedupe set it may instead return ErrDuplicate.
	Append(ctx context.Context, m *message.Message) (uint64, error)
	// Range returns up to limit messages of room with seq > after, in
	// ascending seq order, with the room's head (the last assigned seq) and
	// epoch. Messages already trimmed are simply absent: First tells the
	// seq of the oldest message still retained (Head+1 when none are).
	Range(ctx context.Context, room string, after uint64, limit int) (Page, error)
	// Head returns the last assigned seq of room (0 for a room with none)
	// and its epoch.
	Head(ctx context.Context, room string) (Position, error)
	// Recall returns the acknowledgement of an earlier append of room with
	// Dedupe key key in the current epoch (ok false when there is none, or it
	// is older than DedupeTTL).
	Recall(ctx context.Context, room, key string) (ack Ack, ok bool, err error)
	// Rotate gives room a new epoch if its epoch is still from, and returns
	// the room's epoch afterwards. A node calls it when it sees the store
	// reuse a seq of epoch from (a failover that lost the last writes kept
	// the counter's older value): readers holding cursors of from then
	// reset instead of trusting seqs that now name other messages.
	Rotate(ctx context.Context, room, from string) (string, error)
	// Close releases resources.
	Close() error
}

// Position is where a room's timeline stands: its last assigned seq and the
// epoch that seq belongs to.
type Position struct {
	Head  uint64
	Epoch string
}

// Page is one Range read.
type Page struct {
	Msgs  []*message.Message
	Head  uint64
	First uint64
	Epoch string
}

// Ack is what an append acknowledged: enough to answer a repeat of the
// same send exactly as the first time.
type Ack struct {
	Seq      uint64
	ID       string
	TS       int64
	Priority int
	Epoch    string // the epoch Seq belongs to (Recall fills it)
}

// DedupeTTL is how long an append's Dedupe key is remembered.
const DedupeTTL = 5 * time.Minute

// ErrDuplicate is returned by Append for a message whose Dedupe key was
// already appended (within DedupeTTL, in the current epoch); the message
// then holds the first append's seq, id, ts and priority.
var ErrDuplicate = errors.New("timeline: duplicate append")

// newEpoch returns a fresh epoch id.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
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
