package timeline

import (
	"context"
	"sync"
	"time"
)

// maxSwept bounds the rooms a node remembers to sweep; past it, a new room
// is not remembered (its acks leave its meta hash at its next append or
// read, as without the sweeper).
const maxSwept = 10000

// sweeper rotates the acks out of the meta hash of rooms this node sent
// idempotent messages to and that went quiet (issue 14): nothing else
// touches a room that ended and is never read again, and its meta hash
// would keep its last bucket's acks (up to bucketLen of them) for good.
// Once every ack of a room's last bucket is older than DedupeTTL, one
// Range call (limit 0) rotates them out. Every node that sent to the room
// does it once; the script makes the repeats no-ops.
type sweeper struct {
	t     *Redis
	every time.Duration

	once   sync.Once
	cancel context.CancelFunc // set by once; nil until started
	done   chan struct{}

	mu    sync.Mutex
	rooms map[string]int64 // room → bucket of its last idempotent append; guarded by mu
}

// note remembers that room got idempotent appends in the bucket of now,
// starting the sweep loop on first use.
func (s *sweeper) note(room string, now time.Time) {
	s.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel, s.done = cancel, make(chan struct{})
		go s.run(ctx)
	})
	b := bucketOf(now)
	s.mu.Lock()
	if _, ok := s.rooms[room]; ok || len(s.rooms) < maxSwept {
		s.rooms[room] = b
	}
	s.mu.Unlock()
}

// run sweeps every s.every until ctx ends.
func (s *sweeper) run(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.sweep(ctx)
		}
	}
}

// sweep rotates the rooms whose last bucket's acks are all older than
// DedupeTTL, and forgets them (a failed call is tried at the next tick).
func (s *sweeper) sweep(ctx context.Context) {
	now := s.t.now()
	var due []string
	s.mu.Lock()
	for room, b := range s.rooms {
		if now.UnixMilli() >= (b+1)*bucketLen.Milliseconds()+DedupeTTL.Milliseconds() {
			due = append(due, room)
		}
	}
	s.mu.Unlock()
	for _, room := range due {
		if ctx.Err() != nil {
			return
		}
		if _, err := s.t.Range(ctx, room, 0, 0); err != nil {
			continue
		}
		s.mu.Lock()
		if b, ok := s.rooms[room]; ok && now.UnixMilli() >= (b+1)*bucketLen.Milliseconds()+DedupeTTL.Milliseconds() {
			delete(s.rooms, room) // not sent to since
		}
		s.mu.Unlock()
	}
}

// close stops the loop, if it started, and waits for it.
func (s *sweeper) close() {
	s.once.Do(func() {}) // no loop starts after this
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

// bucketOf is the dedupe bucket (bucketLen long) of now.
func bucketOf(now time.Time) int64 { return now.UnixMilli() / bucketLen.Milliseconds() }
