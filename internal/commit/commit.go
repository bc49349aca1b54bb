// Package commit is group commit on the write path (R12): the sends into
// one room that arrive while an append of that room is in flight are
// stored together by the next append — one store call (one Lua call in
// Redis mode) for the whole batch — so a hot room costs the store one
// round trip per batch, not per message.
//
// Guarantees: a room's messages are appended in arrival order (one batch in
// flight per room and node); each sender gets its own result with its own
// seq; nothing is acknowledged before the batch holding it is stored; when
// the store call fails, every message of that batch gets the error (none is
// acknowledged). The batch size is bounded per room by a limit that adapts
// to the measured append latency: it grows while appends stay under the
// latency target and the limit holds messages back (messages wait behind a
// full batch, or the limit ends a linger), and shrinks when an append and
// the room's average append latency both overrun the target (R12's
// "parallelism adapted to the delay"). The current limit of
// each busy room is exported as roomcast_commit_batch_limit{room}.
//
// Linger: a batch cannot outgrow the sends that arrive during one append
// (about a millisecond against Redis), so a hot room would still cost the
// store a call per few messages. A room whose last batch held more than one
// message, on a store whose appends take at least remoteAppend (a network
// round trip: Redis, not memory), is busy: its next batch waits until the
// limit is reached, or no send has arrived for IdleGap once it holds as
// many as the last batch (closed-loop senders are all waiting for their
// acks: waiting longer gains nothing; a pause before that is paced senders
// or a busy machine, and ending there would only make small batches), or its
// oldest message has waited the linger, Linger minus the room's measured
// append latency (a moving average), so that waiting plus storing stays
// about Linger; a store that slows down shortens the wait, one slower than
// Linger ends it. A quiet room (one message at a time) never waits. The
// current linger of each busy room is exported as
// roomcast_commit_linger_seconds{room}.
package commit

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/message"
)

// Appender stores a batch of messages of one room, in order, in one atomic
// step when it can: it sets each message's Seq (and what else a store
// stamps). errs, when not nil, holds a per-message outcome (e.g. a
// duplicate); err fails the whole batch, and then no message of it may be
// acknowledged.
type Appender interface {
	AppendBatch(ctx context.Context, msgs []*message.Message) (errs []error, err error)
}

// Config tunes the committer. Zero values mean the defaults.
type Config struct {
	// MinBatch and MaxBatch bound the adaptive per-room limit; defaults 16
	// and 1024.
	MinBatch, MaxBatch int
	// Target is the append latency the limit aims to stay under; default
	// 10 ms.
	Target time.Duration
	// Timeout bounds one append call; default 5 s.
	Timeout time.Duration
	// Linger is what a message of a busy room may spend waiting for
	// companions plus being stored; default 20 ms, negative: no waiting.
	Linger time.Duration
	// IdleGap ends a linger during which no send arrived, once the batch
	// holds as many as the last one; default 2 ms.
	IdleGap time.Duration
}

func (c Config) withDefaults() Config {
	if c.MinBatch <= 0 {
		c.MinBatch = 16
	}
	if c.MaxBatch < c.MinBatch {
		c.MaxBatch = max(1024, c.MinBatch)
	}
	if c.Target <= 0 {
		c.Target = 10 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.IdleGap <= 0 {
		c.IdleGap = 2 * time.Millisecond
	}
	return c
}

// DefaultLinger is Config.Linger's default: long enough for a room taking
// 3,000 sends/s on a node to store ~60 per call, short enough to keep
// send→ack far below 50 ms.
const DefaultLinger = 20 * time.Millisecond

// remoteAppend is the append latency from which a store is worth lingering
// for: a round trip to Redis, not an in-memory store.
const remoteAppend = 250 * time.Microsecond

// Committer batches appends per room. It is safe for concurrent use.
type Committer struct {
	app Appender
	cfg Config

	limit  *prometheus.GaugeVec   // current batch limit by room
	linger *prometheus.GaugeVec   // current linger by room
	size   prometheus.Histogram   // messages per append call
	ends   *prometheus.CounterVec // batches by what ended their wait

	mu     sync.Mutex
	rooms  map[string]*room // rooms that sent recently; guarded by mu
	closed bool             // guarded by mu
	wg     sync.WaitGroup   // the rooms' drain goroutines
}

// room is one room's queue. Its drain goroutine owns inflight batches; the
// queue is guarded by the Committer's mu.
type room struct {
	id      string
	queue   []*pending    // arrived, not yet in a batch
	limit   int           // current batch limit (adaptive)
	running bool          // a drain goroutine owns the room's appends
	last    time.Time     // last append call
	prev    int           // messages in the last batch: > 1 means busy
	arrived time.Time     // the last send's arrival
	lat     time.Duration // moving average of the append latency
	full    chan struct{} // while lingering: closed when the queue reaches limit or prev
}

// maxIdleRooms bounds the rooms kept with their limit while idle; past it,
// rooms idle for idleAfter are forgotten.
const (
	maxIdleRooms = 4096
	idleAfter    = time.Minute
)

type pending struct {
	m    *message.Message
	at   time.Time  // arrival
	done chan error // buffered: the result, sent once
}

// ErrClosed is returned for appends after Close.
var ErrClosed = errors.New("commit: closed")

// New returns a Committer appending through app. reg, if not nil, receives
// its metrics.
func New(app Appender, cfg Config, reg prometheus.Registerer) *Committer {
	c := &Committer{app: app, cfg: cfg.withDefaults(), rooms: map[string]*room{},
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roomcast_commit_batch_limit",
			Help: "Current adaptive limit of messages per store append, by busy room (group commit, R12)."}, []string{"room"}),
		linger: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roomcast_commit_linger_seconds",
			Help: "Current wait of a busy room's batch for more messages: Linger minus the measured append latency (group commit)."}, []string{"room"}),
		size: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomcast_commit_batch_size",
			Help: "Messages stored per store append (group commit).", Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		ends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_commit_batches_total",
			Help: "Store appends by what ended the batch's wait: none (a quiet room or a local store), full (the limit), idle (IdleGap without a send), linger (the oldest message waited the linger)."},
			[]string{"end"}),
	}
	if reg != nil {
		reg.MustRegister(c.limit, c.linger, c.size, c.ends)
	}
	return c
}

// Append stores m with the other messages of its room that arrive while an
// append of that room is in flight, and returns its seq once the batch
// holding it is stored. ctx bounds the wait; a message whose caller gave up
// may still be stored (as with any timed-out write).
func (c *Committer) Append(ctx context.Context, m *message.Message) (uint64, error) {
	p := &pending{m: m, at: time.Now(), done: make(chan error, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	r, ok := c.rooms[m.Room]
	if !ok {
		if len(c.rooms) >= maxIdleRooms {
			c.sweepLocked(time.Now())
		}
		r = &room{id: m.Room, limit: c.cfg.MinBatch}
		c.rooms[m.Room] = r
	}
	r.queue = append(r.queue, p)
	r.arrived = p.at
	if r.full != nil && (len(r.queue) >= r.limit || len(r.queue) == r.prev) {
		close(r.full) // the lingering batch is full, or may now end by IdleGap
		r.full = nil
	}
	start := !r.running
	if start {
		r.running = true
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if start {
		go c.drain(r)
	}
	select {
	case err := <-p.done:
		if err != nil {
			return 0, err
		}
		return m.Seq, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// sweepLocked forgets rooms idle for idleAfter.
func (c *Committer) sweepLocked(now time.Time) {
	for id, r := range c.rooms {
		if !r.running && now.Sub(r.last) > idleAfter {
			delete(c.rooms, id)
			c.limit.DeleteLabelValues(id)
			c.linger.DeleteLabelValues(id)
		}
	}
}

// drain appends r's queue batch by batch until it is empty.
func (c *Committer) drain(r *room) {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		end := c.lingerLocked(r)
		n := min(len(r.queue), r.limit)
		if n == 0 {
			r.running = false
			r.last = time.Now()
			c.mu.Unlock()
			return
		}
		batch := make([]*pending, n)
		copy(batch, r.queue)
		clear(r.queue[:n])
		r.queue = r.queue[n:]
		waiting := len(r.queue)
		c.mu.Unlock()

		c.ends.WithLabelValues(end).Inc()
		took := c.commit(batch)

		c.mu.Lock()
		if r.lat == 0 {
			r.lat = took
		} else {
			r.lat += (took - r.lat) / 8
		}
		r.limit = c.adapt(r.limit, n, waiting > 0 || end == endFull, took, r.lat)
		r.prev = n
		c.limit.WithLabelValues(r.id).Set(float64(r.limit))
		c.linger.WithLabelValues(r.id).Set(c.lingerOf(r).Seconds())
		c.mu.Unlock()
	}
}

// lingerOf is how long a batch of r waits for more messages at most: 0
// unless r is busy on a remote store, else Linger minus the measured append
// latency.
func (c *Committer) lingerOf(r *room) time.Duration {
	if r.prev < 2 || r.lat < remoteAppend {
		return 0
	}
	return max(0, c.cfg.Linger-r.lat)
}

// Batch ends, the label of roomcast_commit_batches_total.
const (
	endNone   = "none"
	endFull   = "full"
	endIdle   = "idle"
	endLinger = "linger"
)

// lingerLocked waits, with c.mu held on entry and return, until r's queue
// reaches its limit, no send has arrived for IdleGap while it holds at least
// as many as the last batch, or its oldest message has waited lingerOf(r);
// it returns which ended the wait.
func (c *Committer) lingerLocked(r *room) string {
	l := c.lingerOf(r)
	if l == 0 || len(r.queue) == 0 {
		return endNone
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for len(r.queue) < r.limit {
		wake, end := r.queue[0].at.Add(l), endLinger
		// Closed-loop senders are all back once the queue holds as many as
		// the last batch; before that a pause is a paced sender's (or a busy
		// machine's) and ending the batch there would only make it small.
		if idle := r.arrived.Add(c.cfg.IdleGap); len(r.queue) >= r.prev && idle.Before(wake) {
			wake, end = idle, endIdle
		}
		wait := time.Until(wake)
		if wait <= 0 {
			return end
		}
		full := make(chan struct{})
		r.full = full
		c.mu.Unlock()
		t.Reset(wait)
		select {
		case <-full:
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
		if r.full == full {
			r.full = nil
		}
	}
	return endFull
}

// commit appends one batch and hands each sender its result.
func (c *Committer) commit(batch []*pending) time.Duration {
	msgs := make([]*message.Message, len(batch))
	for i, p := range batch {
		msgs[i] = p.m
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	start := time.Now()
	errs, err := c.app.AppendBatch(ctx, msgs)
	took := time.Since(start)
	cancel()
	c.size.Observe(float64(len(batch)))
	for i, p := range batch {
		switch {
		case err != nil:
			p.done <- err // the whole batch failed: nobody is acknowledged
		case i < len(errs):
			p.done <- errs[i]
		default:
			p.done <- nil
		}
	}
	return took
}

// adapt is the next batch limit after an append of n messages that took
// took, the room's average append latency now avg: double while appends
// stay under the target and the limit is what held messages back (held
// says messages waited behind the batch, or the limit ended its linger),
// halve when an append overran the target and so does the average (one
// slow append on a busy machine is not a slow store: halving for it would
// only make the next batches small).
func (c *Committer) adapt(limit, n int, held bool, took, avg time.Duration) int {
	switch {
	case took > c.cfg.Target && avg > c.cfg.Target && limit > c.cfg.MinBatch:
		return max(c.cfg.MinBatch, limit/2)
	case took <= c.cfg.Target/2 && n == limit && held:
		return min(c.cfg.MaxBatch, limit*2)
	}
	return limit
}

// Close waits for the batches in flight and refuses new appends.
func (c *Committer) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}
