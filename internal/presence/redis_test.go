package presence

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRedisContract runs the shared contract against the machine's Redis,
// each sub-test under its own key prefix (deleted afterwards).
func TestRedisContract(t *testing.T) {
	c := redistest.Client(t)
	runContract(t, func(t *testing.T, ttl time.Duration) Presence {
		return newTestRedis(t, redistest.Prefix(t, c), "N", ttl)
	})
}

func newTestRedis(t *testing.T, prefix, node string, ttl time.Duration) *Redis {
	c := redistest.Client(t)
	p := NewRedis(c, RedisConfig{Prefix: prefix, NodeID: node, TTL: ttl, NodeTTL: 700 * time.Millisecond, Flush: 100 * time.Millisecond})
	t.Cleanup(func() { p.Close() })
	return p
}

// halt stops p's flusher as a crash would: nothing more is written.
func (p *Redis) halt() {
	close(p.stop)
	<-p.done
}

// TestRedisAcrossNodes: counts add up across nodes, a node's own changes
// show at once, the audience merges every node's members, a dead node drops
// out within NodeTTL, and watch time reaches the stats.
func TestRedisAcrossNodes(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	a, b := newTestRedis(t, prefix, "A", time.Minute), newTestRedis(t, prefix, "B", time.Minute)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if isNew, _ := a.Join(ctx, "r", Member{Session: fmt.Sprint("a", i), UserID: fmt.Sprint("ua", i), Name: "a", Level: i}); !isNew {
			t.Fatal("join not new")
		}
	}
	for i := 0; i < 2; i++ {
		b.Touch(ctx, "r", Member{Session: fmt.Sprint("b", i), UserID: fmt.Sprint("ub", i), Name: "b", Level: 10 + i, Since: time.Now().Add(-10 * time.Second)})
	}
	if n, _ := a.Count(ctx, "r"); n < 3 {
		t.Fatalf("own joins must count at once: %d", n)
	}
	count := func(p *Redis) int { n, err := p.Count(ctx, "r"); _ = err; return n }
	testutil.WaitFor(t, "both nodes to see 5", 10*time.Second, func() bool { return count(a) == 5 && count(b) == 5 })

	testutil.WaitFor(t, "the merged audience", 10*time.Second, func() bool {
		aud, err := a.Audience(ctx, "r", 3)
		return err == nil && sameUsers(aud, []string{"ub1", "ub0", "ua2"})
	})

	if err := b.Leave(ctx, "r", "b1"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the other node's watch time", 10*time.Second, func() bool {
		st, err := a.Stats(ctx, "r")
		return err == nil && st.Viewers == 1 && st.TopWatchers[0].UserID == "ub1" && st.TopWatchers[0].Seconds >= 9 && st.Peak >= 5
	})

	b.halt() // B dies without a word
	testutil.WaitFor(t, "the dead node's sessions to vanish", 10*time.Second, func() bool { return count(a) == 3 })

	// A graceful Close removes the node's sessions at once.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	other := newTestRedis(t, prefix, "C", time.Minute)
	if n := count(other); n != 0 {
		t.Fatalf("after close: %d online", n)
	}
}
