package likes

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRedisCounter(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	a := NewRedis(c, RedisConfig{Prefix: prefix, MaxAge: 50 * time.Millisecond})
	b := NewRedis(c, RedisConfig{Prefix: prefix, MaxAge: 50 * time.Millisecond})
	ctx := context.Background()
	if n, err := b.Total(ctx, "r"); err != nil || n != 0 {
		t.Fatalf("empty total %d %v", n, err)
	}
	for i := 1; i <= 3; i++ {
		if n, err := a.Add(ctx, "r", 2); err != nil || n != int64(2*i) {
			t.Fatalf("add: %d %v", n, err)
		}
	}
	time.Sleep(60 * time.Millisecond)
	if n, err := b.Total(ctx, "r"); err != nil || n != 6 {
		t.Fatalf("other node's total %d %v", n, err)
	}
}
