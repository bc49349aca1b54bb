package redisgate

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"roomcast/internal/metrics"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type pollKey struct{}

// newGate returns a gate on a client of addr, both closed after the test.
func newGate(t *testing.T, addr string) (*Gate, rueidis.Client, *metrics.Metrics) {
	t.Helper()
	opt, err := Options(addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	g, err := New(c, Config{Metrics: m, PingEvery: 50 * time.Millisecond, PingEveryDown: 20 * time.Millisecond,
		InPoll: func(ctx context.Context) bool { return ctx.Value(pollKey{}) != nil }})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); c.Close() })
	return g, c, m
}

// setMany runs 40 keyed commands through g, enough to use every pipelined
// connection the client holds (keyed commands pick one at random).
func setMany(t *testing.T, g *Gate, c rueidis.Client, when string) {
	t.Helper()
	for i := 0; i < 40; i++ {
		if err := g.Call(context.Background(), "set", 1, set(c, fmt.Sprint("k", i))); err != nil {
			t.Fatalf("command %d %s: %v", i, when, err)
		}
	}
}

func set(c rueidis.Client, key string) func(context.Context) error {
	return func(ctx context.Context) error { return c.Do(ctx, c.B().Set().Key(key).Value("v").Build()).Error() }
}

func TestGateCountsCommands(t *testing.T) {
	srv := redistest.StartServer(t)
	g, c, m := newGate(t, srv.Addr())
	ctx := context.Background()
	if err := g.Call(ctx, "set", 1, set(c, "a")); err != nil {
		t.Fatal(err)
	}
	if err := g.Call(context.WithValue(ctx, pollKey{}, true), "get", 2, func(ctx context.Context) error {
		return c.Do(ctx, c.B().Get().Key("a").Build()).Error()
	}); err != nil {
		t.Fatal(err)
	}
	// A missing key (redis nil) is an answer, not a failure.
	if err := g.Call(ctx, "get", 1, func(ctx context.Context) error {
		return c.Do(ctx, c.B().Get().Key("missing").Build()).Error()
	}); !rueidis.IsRedisNil(err) {
		t.Fatalf("get missing: %v", err)
	}
	if got := sumCounter(m.StoreCommands.WithLabelValues("set")); got != 1 {
		t.Errorf("set commands = %v, want 1", got)
	}
	if got := sumCounter(m.StoreCommands.WithLabelValues("get")); got != 3 {
		t.Errorf("get commands = %v, want 3", got)
	}
	if got := g.polls.Load(); got != 2 {
		t.Errorf("poll commands = %d, want 2", got)
	}
	if g.Down() {
		t.Fatal("gate closed without an outage")
	}
}

func TestGateIgnoresCommandErrorsAndCallersGivingUp(t *testing.T) {
	srv := redistest.StartServer(t)
	g, c, m := newGate(t, srv.Addr())
	ctx := context.Background()
	if err := g.Call(ctx, "set", 1, set(c, "s")); err != nil {
		t.Fatal(err)
	}
	// WRONGTYPE is one command's error: Redis is serving.
	err := g.Call(ctx, "lpush", 1, func(ctx context.Context) error {
		return c.Do(ctx, c.B().Lpush().Key("s").Element("x").Build()).Error()
	})
	if _, ok := rueidis.IsRedisErr(err); !ok {
		t.Fatalf("lpush on a string: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := g.Call(cctx, "get", 1, func(ctx context.Context) error { return ctx.Err() }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	if g.Down() {
		t.Fatal("a command error or a cancelled caller closed the gate")
	}
	if got := sumCounter(m.StoreErrors.WithLabelValues("lpush")); got != 1 {
		t.Errorf("lpush errors = %v, want 1", got)
	}
}

func TestGateFailsFastAndReopens(t *testing.T) {
	srv := redistest.StartServer(t)
	g, c, m := newGate(t, srv.Addr())
	var ups atomic.Int32
	g.OnUp(func() { ups.Add(1) })
	ctx := context.Background()
	// Enough keyed commands to have used every pipelined connection the
	// client may hold, so one left idle goes stale with the outage.
	setMany(t, g, c, "before the outage")

	srv.Kill()
	// The first command after the outage fails for real and closes the gate
	// (or the pinger got there first).
	testutil.WaitFor(t, "the gate to close", 10*time.Second, func() bool {
		_ = g.Call(ctx, "set", 1, set(c, "k"))
		return g.Down()
	})
	if up := gauge(t, m, "roomcast_store_up"); up != 0 {
		t.Errorf("roomcast_store_up = %v while down", up)
	}
	var ran atomic.Bool
	start := time.Now()
	err := g.Call(ctx, "set", 1, func(context.Context) error { ran.Store(true); return nil })
	if !errors.Is(err, ErrDown) || ran.Load() {
		t.Fatalf("call while down: err %v, ran %v", err, ran.Load())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failing fast took %v", d)
	}

	srv.Start()
	testutil.WaitFor(t, "the gate to reopen", 20*time.Second, func() bool { return !g.Down() })
	testutil.WaitFor(t, "the OnUp hook", 10*time.Second, func() bool { return ups.Load() >= 1 })
	// Every command after the reopening succeeds: none meets a connection
	// that died with the outage (keyed commands pick a connection at random).
	setMany(t, g, c, "after reopening")
	if up := gauge(t, m, "roomcast_store_up"); up != 1 {
		t.Errorf("roomcast_store_up = %v after reopening", up)
	}
}

// gauge reads an unlabelled gauge from m's registry.
func gauge(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func TestNewNeedsClientAndMetrics(t *testing.T) {
	if _, err := New(nil, Config{Metrics: metrics.New()}); err == nil {
		t.Fatal("New(nil client) succeeded")
	}
}

// After an outage noticed by the pinger alone, every command succeeds once
// the gate reopens: no command meets a connection that died with Redis
// (keyed commands used to pick one of several at random, and PING checked
// only the first).
func TestGateReopensOntoLiveConnections(t *testing.T) {
	srv := redistest.StartServer(t)
	g, c, _ := newGate(t, srv.Addr())
	setMany(t, g, c, "before the outage")
	srv.Kill()
	testutil.WaitFor(t, "the pinger to close the gate", 10*time.Second, g.Down)
	srv.Start()
	testutil.WaitFor(t, "the gate to reopen", 20*time.Second, func() bool { return !g.Down() })
	setMany(t, g, c, "after reopening")
}
