package likes

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestRedis(t *testing.T, prefix string) *Redis {
	c := NewRedis(redistest.Client(t), RedisConfig{Prefix: prefix, MaxAge: 50 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisContract runs the shared contract against the machine's Redis,
// each sub-test under its own key prefix.
func TestRedisContract(t *testing.T) {
	c := redistest.Client(t)
	runContract(t, func(t *testing.T) Counter { return newTestRedis(t, redistest.Prefix(t, c)) })
}

// TestRedisAcrossNodes: one node's likes reach another node's total within
// its MaxAge.
func TestRedisAcrossNodes(t *testing.T) {
	prefix := redistest.Prefix(t, redistest.Client(t))
	a, b := newTestRedis(t, prefix), newTestRedis(t, prefix)
	ctx := context.Background()
	if n, err := b.Total(ctx, "r"); err != nil || n != 0 {
		t.Fatalf("empty total %d %v", n, err)
	}
	if n, err := a.Add(ctx, "r", 6); err != nil || n != 6 {
		t.Fatalf("add: %d %v", n, err)
	}
	testutil.WaitFor(t, "the other node's total", 10*time.Second, func() bool {
		n, err := b.Total(ctx, "r")
		return err == nil && n == 6
	})
}
