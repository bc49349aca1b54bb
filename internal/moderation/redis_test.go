package moderation

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRedisContract runs the shared contract against the machine's Redis,
// each sub-test under its own key prefix.
func TestRedisContract(t *testing.T) {
	c := redistest.Client(t)
	runContract(t, func(t *testing.T, n int, per time.Duration) State {
		s := NewRedis(c, n, per, RedisConfig{Prefix: redistest.Prefix(t, c)})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestRedisAcrossNodes: the token bucket, mutes and kicks are shared by
// nodes.
func TestRedisAcrossNodes(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	a := NewRedis(c, 3, time.Minute, RedisConfig{Prefix: prefix})
	b := NewRedis(redistest.Client(t), 3, time.Minute, RedisConfig{Prefix: prefix})
	ctx := context.Background()
	for i, s := range []*Redis{a, b, a} {
		if ok, _, err := s.Allow(ctx, "u"); !ok || err != nil {
			t.Fatalf("send %d refused: %v", i, err)
		}
	}
	if ok, wait, err := b.Allow(ctx, "u"); ok || err != nil || wait <= 0 {
		t.Fatalf("4th send across nodes: ok %v wait %v err %v", ok, wait, err)
	}
	if err := a.Mute(ctx, "r", "u", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := a.Kick(ctx, "r", "k", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Muted(ctx, "r", "u"); !m || err != nil {
		t.Fatalf("muted on the other node: %v %v", m, err)
	}
	if k, err := b.Kicked(ctx, "r", "k"); !k || err != nil {
		t.Fatalf("kicked on the other node: %v %v", k, err)
	}
	if err := b.Unmute(ctx, "r", "u"); err != nil {
		t.Fatal(err)
	}
	if m, _ := a.Muted(ctx, "r", "u"); m {
		t.Fatal("still muted after the other node's unmute")
	}
}
