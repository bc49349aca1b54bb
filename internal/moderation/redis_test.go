package moderation

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"roomcast/internal/bus"
	"roomcast/internal/rediscall"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one node's moderation State on c: its own bus, closed after the
// test.
func node(t *testing.T, c rueidis.Client, prefix string, n int, per time.Duration, cfg RedisConfig) *Redis {
	t.Helper()
	b, err := bus.NewRedis(c, bus.RedisConfig{Prefix: prefix, RoomChannel: func(room string) string { return prefix + "{" + room + "}:ch" }})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Prefix, cfg.Bus = prefix, b
	s, err := NewRedis(c, n, per, cfg)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); b.Close() })
	return s
}

// TestRedisContract runs the shared contract against the machine's Redis,
// each sub-test under its own key prefix.
func TestRedisContract(t *testing.T) {
	c := redistest.Client(t)
	runContract(t, func(t *testing.T, n int, per time.Duration) State {
		return node(t, c, redistest.Prefix(t, c), n, per, RedisConfig{})
	})
}

// TestRedisSharedRateContract: the same contract with the rate limit kept in
// Redis (--rate-limit-scope cluster).
func TestRedisSharedRateContract(t *testing.T) {
	c := redistest.Client(t)
	runContract(t, func(t *testing.T, n int, per time.Duration) State {
		return node(t, c, redistest.Prefix(t, c), n, per, RedisConfig{SharedRate: true})
	})
}

// TestRedisNodeRate: by default each node limits the users who send through
// it with no Redis command: over the limit on one node, a user is refused
// with a wait; another node keeps its own bucket (k nodes: at most k times
// the rate, as documented).
func TestRedisNodeRate(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	var calls atomic.Int64
	count := rediscall.Func(func(ctx context.Context, op string, n int, do func(context.Context) error) error {
		calls.Add(int64(n))
		return do(ctx)
	})
	a := node(t, c, prefix, 3, time.Minute, RedisConfig{Call: count})
	b := node(t, redistest.Client(t), prefix, 3, time.Minute, RedisConfig{Call: count})
	for i := 0; i < 3; i++ {
		if ok, _ := allow(t, a, "u"); !ok {
			t.Fatalf("send %d refused", i)
		}
	}
	if ok, wait := allow(t, a, "u"); ok || wait <= 15*time.Second || wait > 20*time.Second+time.Millisecond {
		t.Fatalf("4th send on one node: ok %v wait %v", ok, wait)
	}
	if ok, _ := allow(t, b, "u"); !ok {
		t.Fatal("the other node's bucket is its own")
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("node-scoped rate checks cost %d Redis commands, want 0", n)
	}
}

// TestRedisAcrossNodes: the token bucket, mutes and kicks are shared by
// nodes; a node's copy of a room follows another node's changes within the
// bus's latency.
func TestRedisAcrossNodes(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	a := node(t, c, prefix, 3, time.Minute, RedisConfig{SharedRate: true})
	b := node(t, redistest.Client(t), prefix, 3, time.Minute, RedisConfig{SharedRate: true})
	ctx := context.Background()
	for i, s := range []*Redis{a, b, a} {
		if ok, _, err := s.Allow(ctx, "u"); !ok || err != nil {
			t.Fatalf("send %d refused: %v", i, err)
		}
	}
	if ok, wait, err := b.Allow(ctx, "u"); ok || err != nil || wait <= 0 {
		t.Fatalf("4th send across nodes: ok %v wait %v err %v", ok, wait, err)
	}
	// Both nodes hold a copy of the room before the changes.
	for _, s := range []*Redis{a, b} {
		if ask(t, s.Muted, "r", "u") || ask(t, s.Kicked, "r", "k") {
			t.Fatal("muted or kicked before any change")
		}
	}
	if err := a.Mute(ctx, "r", "u", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the other node to see the mute", 5*time.Second, func() bool { return ask(t, b.Muted, "r", "u") })
	if err := a.Kick(ctx, "r", "k", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the other node to see the kick", 5*time.Second, func() bool { return ask(t, b.Kicked, "r", "k") })
	if err := b.Unmute(ctx, "r", "u"); err != nil {
		t.Fatal(err)
	}
	if ask(t, b.Muted, "r", "u") {
		t.Fatal("the unmuting node still answers muted")
	}
	testutil.WaitFor(t, "the other node to see the unmute", 5*time.Second, func() bool { return !ask(t, a.Muted, "r", "u") })
	if err := b.Kick(ctx, "r", "k", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the other node to see the kick lifted", 5*time.Second, func() bool { return !ask(t, a.Kicked, "r", "k") })
}

// TestRedisChecksCostNoCommand: after one load per room, a node's checks
// send nothing to Redis.
func TestRedisChecksCostNoCommand(t *testing.T) {
	c := redistest.Client(t)
	var calls atomic.Int64
	count := rediscall.Func(func(ctx context.Context, op string, n int, do func(context.Context) error) error {
		calls.Add(int64(n))
		return do(ctx)
	})
	s := node(t, c, redistest.Prefix(t, c), 0, 0, RedisConfig{Call: count})
	ctx := context.Background()
	if err := s.Mute(ctx, "r", "m", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	before := calls.Load()
	for i := 0; i < 1000; i++ {
		k, err1 := s.Kicked(ctx, "r", "u")
		m, err2 := s.Muted(ctx, "r", "m")
		if k || !m || err1 != nil || err2 != nil {
			t.Fatalf("check %d: kicked %v muted %v (%v, %v)", i, k, m, err1, err2)
		}
	}
	if n := calls.Load() - before; n != 1 {
		t.Fatalf("1000 checks cost %d Redis commands, want 1 (the room's load)", n)
	}
}

// TestRedisConcurrentChanges: two nodes muting and unmuting one user at
// once end with the same answer Redis holds, whatever order their events
// arrive in.
func TestRedisConcurrentChanges(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	a := node(t, c, prefix, 0, 0, RedisConfig{})
	b := node(t, redistest.Client(t), prefix, 0, 0, RedisConfig{})
	ctx := context.Background()
	for _, s := range []*Redis{a, b} {
		ask(t, s.Muted, "r", "u") // hold a copy
	}
	var wg sync.WaitGroup
	for i, s := range []*Redis{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				var err error
				if (i+j)%2 == 0 {
					err = s.Mute(ctx, "r", "u", time.Now().Add(time.Minute))
				} else {
					err = s.Unmute(ctx, "r", "u")
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	fresh, err := a.loadRoom(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	want := fresh.active(kindMute, "u", time.Now().UnixMilli())
	for name, s := range map[string]*Redis{"a": a, "b": b} {
		testutil.WaitFor(t, "node "+name+" to agree with Redis", 5*time.Second, func() bool { return ask(t, s.Muted, "r", "u") == want })
	}
	// And they keep agreeing on a last unmute.
	if err := a.Unmute(ctx, "r", "u"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "node b to see the last unmute", 5*time.Second, func() bool { return !ask(t, b.Muted, "r", "u") })
}

// TestRedisReloadAfterOutage: a node cut off from Redis misses a mute's
// event; when its bus subscribes again it drops its copies and the next
// check loads the mute.
func TestRedisReloadAfterOutage(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	proxy := redistest.StartProxy(t, redistest.RedisAddr)
	a := node(t, c, prefix, 0, 0, RedisConfig{})
	long := CacheConfig{Idle: time.Hour, MaxAge: time.Hour} // only the resync may reload
	b := node(t, redistest.Client(t, proxy.Addr), prefix, 0, 0, RedisConfig{Cache: long})
	ctx := context.Background()
	if ask(t, b.Muted, "r", "u") {
		t.Fatal("muted before any mute")
	}
	proxy.Cut()
	if err := a.Mute(ctx, "r", "u", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	testutil.WaitFor(t, "the cut-off node to reload the room", 10*time.Second, func() bool {
		m, err := b.Muted(ctx, "r", "u")
		return err == nil && m
	})
}

// TestNewRedisNeedsBus: without a bus there are no changes from other nodes.
func TestNewRedisNeedsBus(t *testing.T) {
	if _, err := NewRedis(nil, 0, 0, RedisConfig{}); err == nil {
		t.Fatal("NewRedis without a bus succeeded")
	}
}

// TestRedisClusterContract: the change script touches only the room's hash,
// so the contract holds on a Redis Cluster too.
func TestRedisClusterContract(t *testing.T) {
	c := redistest.Client(t, redistest.StartCluster(t)...)
	runContract(t, func(t *testing.T, n int, per time.Duration) State {
		return node(t, c, redistest.NewPrefix(), n, per, RedisConfig{})
	})
}
