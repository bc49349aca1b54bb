// Package redisgate is the fail-fast gate in front of every Redis round trip
// of cluster mode (R16). The seams (timeline, bus, presence, likes,
// moderation) run their commands through Gate.Call: it counts them by op,
// bounds each with a timeout and, as soon as one fails for want of Redis,
// closes. While closed, commands fail at once with ErrDown (a send gets 503
// unavailable, polls are served stale from the node's window) until the
// gate's pinger reaches every Redis node again; reopening runs the OnUp
// hooks (the bus resyncs its subscriptions). Options turns the --redis flag
// into client options with the same fail-fast settings.
package redisgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/metrics"
)

// ErrDown is what commands get while the gate is closed.
var ErrDown = errors.New("redis unreachable")

// Config tunes a Gate. Zero values mean the documented defaults.
type Config struct {
	Metrics *metrics.Metrics // required: command, error and ratio metrics
	Log     *slog.Logger     // default slog.Default()
	// InPoll reports whether ctx belongs to a poll (its commands are also
	// counted in roomcast_store_poll_commands_total); nil: never.
	InPoll func(ctx context.Context) bool
	// OpTimeout bounds one round trip; default 2s.
	OpTimeout time.Duration
	// PingEvery is the pinger's period while open (default 1s) and
	// PingEveryDown while closed (default 200ms).
	PingEvery, PingEveryDown time.Duration
}

func (c Config) withDefaults() Config {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.InPoll == nil {
		c.InPoll = func(context.Context) bool { return false }
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.PingEvery <= 0 {
		c.PingEvery = time.Second
	}
	if c.PingEveryDown <= 0 {
		c.PingEveryDown = 200 * time.Millisecond
	}
	return c
}

// Gate wraps every Redis round trip; see the package comment. Its pinger
// runs from New until Close.
type Gate struct {
	c   rueidis.Client
	cfg Config
	m   *metrics.Metrics
	log *slog.Logger

	down  atomic.Bool
	total atomic.Uint64 // commands sent
	polls atomic.Uint64 // commands sent while answering a poll

	mu  sync.Mutex
	ups []func() // guarded by mu

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns an open gate on c, registers its metrics on cfg.Metrics and
// starts its pinger.
func New(c rueidis.Client, cfg Config) (*Gate, error) {
	if c == nil || cfg.Metrics == nil {
		return nil, errors.New("redisgate: nil client or metrics")
	}
	cfg = cfg.withDefaults()
	g := &Gate{c: c, cfg: cfg, m: cfg.Metrics, log: cfg.Log,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if err := g.register(); err != nil {
		return nil, fmt.Errorf("redisgate: metrics: %w", err)
	}
	go g.pinger()
	return g, nil
}

// Down reports whether the gate is closed (Redis unreachable).
func (g *Gate) Down() bool { return g.down.Load() }

// OnUp registers f to run (on the pinger goroutine) whenever Redis becomes
// reachable again.
func (g *Gate) OnUp(f func()) {
	g.mu.Lock()
	g.ups = append(g.ups, f)
	g.mu.Unlock()
}

// Call runs do, one round trip of n commands named op, through the gate: at
// once ErrDown while closed, else with a timeout; a failure that means Redis
// cannot serve closes the gate. It has the seams' CallFunc signature.
func (g *Gate) Call(ctx context.Context, op string, n int, do func(context.Context) error) error {
	if g.down.Load() {
		g.m.StoreErrors.WithLabelValues(op).Inc()
		return ErrDown
	}
	g.m.StoreCommands.WithLabelValues(op).Add(float64(n))
	g.total.Add(uint64(n))
	if g.cfg.InPoll(ctx) {
		g.polls.Add(uint64(n))
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.OpTimeout)
	defer cancel()
	err := do(cctx)
	if err == nil || rueidis.IsRedisNil(err) {
		return err
	}
	g.m.StoreErrors.WithLabelValues(op).Inc()
	if outage(ctx, err) {
		g.markDown(op, err)
	}
	return err
}

// outage tells errors that mean Redis cannot serve from errors of one
// command (a bad reply) or of a caller that gave up.
func outage(parent context.Context, err error) bool {
	if parent.Err() != nil && errors.Is(err, parent.Err()) {
		return false // the caller went away
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		msg := re.Error()
		return re.IsLoading() || re.IsClusterDown() || re.IsTryAgain() || strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "READONLY")
	}
	return true
}

func (g *Gate) markDown(op string, err error) {
	if g.down.CompareAndSwap(false, true) {
		g.log.Warn("redis unreachable: failing fast until it answers again", "op", op, "err", err)
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// pinger checks every node once a PingEvery (once a PingEveryDown while
// closed) and reopens the gate when all answer.
func (g *Gate) pinger() {
	defer close(g.done)
	for {
		wait := g.cfg.PingEvery
		if g.down.Load() {
			wait = g.cfg.PingEveryDown
		}
		t := time.NewTimer(wait)
		select {
		case <-g.stop:
			t.Stop()
			return
		case <-g.wake:
			t.Stop()
		case <-t.C:
		}
		err := g.ping()
		switch {
		case err != nil:
			g.markDown("ping", err)
		case g.down.CompareAndSwap(true, false):
			g.log.Info("redis reachable again: resyncing")
			g.mu.Lock()
			ups := append([]func(){}, g.ups...)
			g.mu.Unlock()
			for _, f := range ups {
				f()
			}
		}
	}
}

func (g *Gate) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	nodes := g.c.Nodes()
	if len(nodes) == 0 {
		return errors.New("no redis node known")
	}
	var errs []error
	for addr, n := range nodes {
		g.m.StoreCommands.WithLabelValues("ping").Inc()
		g.total.Add(1)
		if err := n.Do(ctx, n.B().Ping().Build()).Error(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// Close stops the pinger; it is safe to call more than once. It does not
// close the client.
func (g *Gate) Close() {
	g.closeOnce.Do(func() {
		close(g.stop)
		<-g.done
	})
}
