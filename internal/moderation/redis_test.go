package moderation

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRedisState: the token bucket, mutes and kicks are shared by nodes.
func TestRedisState(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	a := NewRedis(c, 3, time.Second, RedisConfig{Prefix: prefix})
	b := NewRedis(c, 3, time.Second, RedisConfig{Prefix: prefix})
	ctx := context.Background()
	for i, s := range []*Redis{a, b, a} {
		if ok, _, err := s.Allow(ctx, "u"); !ok || err != nil {
			t.Fatalf("send %d refused: %v", i, err)
		}
	}
	ok, wait, err := b.Allow(ctx, "u")
	if ok || err != nil || wait <= 0 || wait > 400*time.Millisecond {
		t.Fatalf("4th send: ok %v wait %v err %v", ok, wait, err)
	}
	if ok, _, _ := a.Allow(ctx, "v"); !ok {
		t.Fatal("another user has their own bucket")
	}
	time.Sleep(wait + 20*time.Millisecond)
	if ok, _, _ := a.Allow(ctx, "u"); !ok {
		t.Fatal("bucket did not refill")
	}

	if err := a.Mute(ctx, "r", "u", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Muted(ctx, "r", "u"); !m || err != nil {
		t.Fatalf("muted %v %v", m, err)
	}
	if m, _ := b.Muted(ctx, "other", "u"); m {
		t.Fatal("mute is per room")
	}
	if err := b.Unmute(ctx, "r", "u"); err != nil {
		t.Fatal(err)
	}
	if m, _ := a.Muted(ctx, "r", "u"); m {
		t.Fatal("still muted")
	}
	if err := a.Kick(ctx, "r", "k", time.Now().Add(150*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if k, _ := b.Kicked(ctx, "r", "k"); !k {
		t.Fatal("not kicked")
	}
	time.Sleep(200 * time.Millisecond)
	if k, _ := b.Kicked(ctx, "r", "k"); k {
		t.Fatal("kick did not expire")
	}
	// A send asks Kicked then Muted: one round trip answers both.
	if err := a.Mute(ctx, "r", "s", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if k, err := b.Kicked(ctx, "r", "s"); k || err != nil {
		t.Fatalf("kicked %v %v", k, err)
	}
	if m, _ := b.Muted(ctx, "r", "s"); !m {
		t.Fatal("mute read along with the kick lost")
	}
	unlimited := NewRedis(c, 0, 0, RedisConfig{Prefix: prefix})
	if ok, _, err := unlimited.Allow(ctx, "u"); !ok || err != nil {
		t.Fatal("rate limit off must allow")
	}
}
