package presence

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestRedis(t *testing.T, prefix, node string) *Redis {
	c := redistest.Client(t)
	p := NewRedis(c, RedisConfig{Prefix: prefix, NodeID: node, TTL: time.Second, NodeTTL: 700 * time.Millisecond, Flush: 100 * time.Millisecond})
	t.Cleanup(func() { p.Close() })
	return p
}

// halt stops p's flusher as a crash would: nothing more is written.
func (p *Redis) halt() {
	close(p.stop)
	<-p.done
}

func eventually(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisAcrossNodes: counts add up across nodes, a node's own changes
// show at once, the audience merges every node's members, a dead node drops
// out within NodeTTL, and watch time reaches the stats.
func TestRedisAcrossNodes(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	a, b := newTestRedis(t, prefix, "A"), newTestRedis(t, prefix, "B")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if isNew, _ := a.Join(ctx, "r", Member{Session: fmt.Sprint("a", i), UserID: fmt.Sprint("ua", i), Name: "a", Level: i}); !isNew {
			t.Fatal("join not new")
		}
	}
	if isNew, _ := a.Join(ctx, "r", Member{Session: "a0", UserID: "ua0"}); isNew {
		t.Fatal("second join of a session must not be new")
	}
	for i := 0; i < 2; i++ {
		b.Touch(ctx, "r", Member{Session: fmt.Sprint("b", i), UserID: fmt.Sprint("ub", i), Name: "b", Level: 10 + i, Since: time.Now().Add(-10 * time.Second)})
	}
	if n, _ := a.Count(ctx, "r"); n < 3 {
		t.Fatalf("own joins must count at once: %d", n)
	}
	count := func(p *Redis) int { n, err := p.Count(ctx, "r"); _ = err; return n }
	eventually(t, "both nodes see 5", 2*time.Second, func() bool { return count(a) == 5 && count(b) == 5 })

	aud, err := a.Audience(ctx, "r", 3)
	if err != nil || len(aud) != 3 || aud[0].UserID != "ub1" || aud[1].UserID != "ub0" || aud[2].UserID != "ua2" {
		t.Fatalf("audience %v %v", aud, err)
	}

	if err := b.Leave(ctx, "r", "b1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "watch time recorded", 2*time.Second, func() bool {
		st, err := a.Stats(ctx, "r")
		return err == nil && st.Viewers == 1 && st.TopWatchers[0].UserID == "ub1" && st.TopWatchers[0].Seconds >= 9 && st.Peak >= 5
	})

	b.halt() // B dies without a word
	eventually(t, "dead node's sessions vanish", 3*time.Second, func() bool { return count(a) == 3 })

	// A graceful Close removes the node's sessions at once.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	other := newTestRedis(t, prefix, "C")
	if n := count(other); n != 0 {
		t.Fatalf("after close: %d online", n)
	}
}

// TestRedisPollersExpire: a poller that stops touching leaves after TTL.
func TestRedisPollersExpire(t *testing.T) {
	c := redistest.Client(t)
	p := newTestRedis(t, redistest.Prefix(t, c), "P")
	ctx := context.Background()
	p.Touch(ctx, "q", Member{Session: "p1"})
	if n, _ := p.Count(ctx, "q"); n != 1 {
		t.Fatalf("count %d", n)
	}
	eventually(t, "poller expires", 3*time.Second, func() bool { n, _ := p.Count(ctx, "q"); return n == 0 })
}
