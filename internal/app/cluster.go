package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/rueidis"

	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/config"
	"roomcast/internal/fanout"
	"roomcast/internal/likes"
	"roomcast/internal/metrics"
	"roomcast/internal/moderation"
	"roomcast/internal/placement"
	"roomcast/internal/presence"
	"roomcast/internal/quiz"
	"roomcast/internal/timeline"
)

// redisSeams is the multi-node mode (--redis, issue 5): timeline, bus,
// presence, likes and moderation state all live in Redis (standalone or
// Cluster), behind one client and one gate that counts every command,
// fails fast while Redis is unreachable and notices when it is back.
func redisSeams(ctx context.Context, cfg *config.Config, rate config.Rate, m *metrics.Metrics, log *slog.Logger) (*seams, error) {
	opt, err := redisOptions(cfg.Redis)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(cfg.RedisPrefix, "{}") { // braces would move the rooms' hash tags
		return nil, fmt.Errorf("--redis-prefix %q: no { or } allowed", cfg.RedisPrefix)
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("--redis %v: %w", opt.InitAddress, err) // the URL may hold a password
	}
	prefix := cfg.RedisPrefix
	if prefix == "" {
		prefix = timeline.DefaultPrefix
	}
	g := newRedisGate(client, m, log)
	s := &seams{closers: []func() error{func() error { g.close(); client.Close(); return nil }}}
	tl := timeline.NewRedis(client, timeline.RedisConfig{Prefix: prefix, Call: g.call,
		Retention: timeline.Retention{MaxCount: cfg.RetentionCount, MaxAge: cfg.RetentionAge}})
	s.tl = staleTimeline{Redis: tl, gate: g}
	rb, err := bus.NewRedis(client, bus.RedisConfig{Prefix: prefix, Call: g.call, Log: log,
		RoomChannel: func(room string) string { return timeline.RedisChannel(prefix, room) }})
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	s.bus = rb
	g.onUp(rb.ResyncAll)
	host, _ := os.Hostname()
	p := presence.NewRedis(client, presence.RedisConfig{Prefix: prefix, NodeID: host + "-" + auth.RandomHex(3),
		TTL: presenceTTL(cfg), Audience: 500, Call: g.call, Log: log})
	s.presence = p
	s.likes = likes.NewRedis(client, likes.RedisConfig{Prefix: prefix, Call: g.call})
	s.mod = moderation.NewRedis(client, rate.N, rate.Per, moderation.RedisConfig{Prefix: prefix, Call: g.call})
	s.quiz = quiz.NewRedis(client, quiz.RedisConfig{Prefix: prefix, Call: g.call})
	s.closers = append(s.closers, tl.Close, rb.Close, p.Close, s.likes.Close, s.mod.Close)
	s.placement = func(loads func() map[string]int) *placement.Agent {
		id := cfg.Advertise
		if id == "" {
			id = host + "-" + auth.RandomHex(3)
		}
		return placement.NewAgent(client, id, placement.AgentConfig{Prefix: prefix, URL: cfg.Advertise, Weight: cfg.Weight,
			Placement: placement.Config{Hot: cfg.HotRoom, Balance: cfg.PlacementBalance}, Loads: loads, Call: g.call, Log: log, Reg: m.Reg})
	}
	log.Info("cluster mode", "redis", opt.InitAddress, "mode", client.Mode(), "prefix", prefix)
	return s, nil
}

// redisOptions reads --redis: a redis:// URL (with /DB), or a comma-separated
// list of Redis Cluster seeds (host:port or redis:// URLs).
func redisOptions(spec string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	var addrs []string
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "://") {
			p = "redis://" + p
		}
		o, err := rueidis.ParseURL(p)
		if err != nil {
			return opt, fmt.Errorf("--redis: %w", err)
		}
		if addrs == nil { // the first URL's credentials and database apply to all
			opt = o
		} else if o.SelectDB != opt.SelectDB {
			return opt, errors.New("--redis: seeds name different databases")
		}
		addrs = append(addrs, o.InitAddress...)
	}
	opt.InitAddress = addrs
	if len(opt.InitAddress) == 0 {
		return opt, errors.New("--redis: no address")
	}
	if len(opt.InitAddress) > 1 && opt.SelectDB != 0 {
		return opt, errors.New("--redis: a Redis Cluster has no database numbers")
	}
	opt.DisableCache = true
	// Fail fast (R16): no transparent retries, short dials and deadlines; the
	// gate answers 503 at once while Redis is down.
	opt.DisableRetry = true
	opt.Dialer.Timeout = time.Second
	opt.ConnWriteTimeout = 3 * time.Second
	if opt.ClientName == "" {
		opt.ClientName = "roomcast"
	}
	return opt, nil
}

// staleTimeline gives the Redis timeline the Stale capability that the app
// hands to the fan-out (polls are marked stale while Redis is down).
type staleTimeline struct {
	*timeline.Redis
	gate *redisGate
}

// Stale reports whether Redis is unreachable.
func (s staleTimeline) Stale() bool { return s.gate.down.Load() }

// staleFunc returns tl's Stale capability, or nil (memory mode).
func staleFunc(tl timeline.Timeline) func() bool {
	if s, ok := tl.(interface{ Stale() bool }); ok {
		return s.Stale
	}
	return nil
}

// opTimeout bounds one Redis round trip.
const opTimeout = 2 * time.Second

// errRedisDown is what commands get while the gate is closed.
var errRedisDown = errors.New("redis unreachable")

// redisGate wraps every Redis round trip (the seams' CallFunc): it counts
// commands by op in roomcast_store_commands_total (and separately those
// made while answering a poll), bounds each with a timeout, and, as soon as
// one fails for want of Redis, closes: commands then fail at once (a send
// gets 503 unavailable, R16) until its pinger reaches every node again.
// Reopening resyncs the bus subscriptions (onUp).
type redisGate struct {
	c   rueidis.Client
	m   *metrics.Metrics
	log *slog.Logger

	down  atomic.Bool
	total atomic.Uint64 // commands sent
	polls atomic.Uint64 // commands sent while answering a poll

	mu  sync.Mutex
	ups []func() // guarded by mu

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newRedisGate(c rueidis.Client, m *metrics.Metrics, log *slog.Logger) *redisGate {
	g := &redisGate{c: c, m: m, log: log, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	g.register()
	go g.pinger()
	return g
}

// onUp registers f to run whenever Redis becomes reachable again.
func (g *redisGate) onUp(f func()) {
	g.mu.Lock()
	g.ups = append(g.ups, f)
	g.mu.Unlock()
}

func (g *redisGate) call(ctx context.Context, op string, n int, do func(context.Context) error) error {
	if g.down.Load() {
		g.m.StoreErrors.WithLabelValues(op).Inc()
		return errRedisDown
	}
	g.m.StoreCommands.WithLabelValues(op).Add(float64(n))
	g.total.Add(uint64(n))
	if fanout.InPoll(ctx) {
		g.polls.Add(uint64(n))
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
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

func (g *redisGate) markDown(op string, err error) {
	if g.down.CompareAndSwap(false, true) {
		g.log.Warn("redis unreachable: failing fast until it answers again", "op", op, "err", err)
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// pinger checks every node once a second (five times a second while down)
// and reopens the gate when all answer.
func (g *redisGate) pinger() {
	defer close(g.done)
	for {
		wait := time.Second
		if g.down.Load() {
			wait = 200 * time.Millisecond
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

func (g *redisGate) ping() error {
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

func (g *redisGate) close() {
	select {
	case <-g.stop:
		return
	default:
	}
	close(g.stop)
	<-g.done
}

// register exposes the gate's state and the per-poll and per-delivery
// command ratios (issue 5: a hot room's poll costs no Redis command).
func (g *redisGate) register() {
	g.m.Reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_store_up", Help: "1 while the shared store (Redis) answers, 0 while the node fails fast."},
			func() float64 {
				if g.down.Load() {
					return 0
				}
				return 1
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roomcast_store_poll_commands_total",
			Help: "Shared-store commands sent while answering polls (0 for rooms served from the window)."},
			func() float64 { return float64(g.polls.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_store_commands_per_poll",
			Help: "Shared-store commands sent while answering polls, per poll, since start."},
			func() float64 { return ratio(float64(g.polls.Load()), sumCounter(g.m.Polls)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_store_commands_per_delivery",
			Help: "All shared-store commands (background included) per message delivered to a WebSocket connection, since start."},
			func() float64 { return ratio(float64(g.total.Load()), sumCounter(g.m.Deliveries)) }),
	)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// sumCounter adds up a counter (or every series of a counter vector).
func sumCounter(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }() // ends when Collect returns; drained below
	var sum float64
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) == nil && d.Counter != nil {
			sum += d.Counter.GetValue()
		}
	}
	return sum
}
