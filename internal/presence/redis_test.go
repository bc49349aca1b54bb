package presence

import (
	"context"
	"fmt"
	"slices"
	"sync"
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

// TestRedisWatchTimeOnce: watch time reaches the stats exactly once when a
// flush's fate is unknown to the node. A round trip that times out may have
// been applied (the reply was lost) or not (it never left): the node must
// send the watch time again, and Redis must add it only once.
func TestRedisWatchTimeOnce(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	var mu sync.Mutex
	mode := "" // "lost": apply, then lose the reply; "refused": send nothing
	failed := map[string]int{}
	call := func(ctx context.Context, op string, n int, do func(context.Context) error) error {
		mu.Lock()
		m := mode
		mu.Unlock()
		if op != "presence_flush" || m == "" {
			return do(ctx)
		}
		if m == "lost" {
			if err := do(ctx); err != nil {
				return err
			}
			dead, cancel := context.WithCancel(ctx)
			cancel()
			_ = do(dead) // the results of the applied write are replaced by failures
		}
		mu.Lock()
		failed[m]++
		mu.Unlock()
		return context.DeadlineExceeded
	}
	p := NewRedis(c, RedisConfig{Prefix: prefix, NodeID: "N", TTL: time.Minute, NodeTTL: 700 * time.Millisecond, Flush: 50 * time.Millisecond, Call: call})
	t.Cleanup(func() { p.Close() })
	ctx := context.Background()
	stay := func(sess, user string, secs int) {
		t.Helper()
		m := Member{Session: sess, UserID: user, Since: time.Now().Add(-time.Duration(secs) * time.Second)}
		if _, err := p.Join(ctx, "w", m); err != nil {
			t.Fatal(err)
		}
		if err := p.Leave(ctx, "w", sess); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"lost", "refused"} {
		mu.Lock()
		mode = m
		mu.Unlock()
		stay("s-"+m, "u-"+m, 100)
		mu.Lock()
		from := failed[m]
		mu.Unlock()
		testutil.WaitFor(t, "three "+m+" flushes", wait, func() bool { mu.Lock(); defer mu.Unlock(); return failed[m] >= from+3 })
		mu.Lock()
		mode = ""
		mu.Unlock()
		testutil.WaitFor(t, "the watch time of "+m, wait, func() bool {
			st, err := p.Stats(ctx, "w")
			return err == nil && slices.ContainsFunc(st.TopWatchers, func(w Watch) bool { return w.UserID == "u-"+m })
		})
	}
	// More flushes add nothing more.
	stay("s-last", "u-last", 10)
	testutil.WaitFor(t, "the last watch time", wait, func() bool { st, _ := p.Stats(ctx, "w"); return st.Viewers == 3 })
	st, err := p.Stats(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range st.TopWatchers {
		want := int64(100)
		if w.UserID == "u-last" {
			want = 10
		}
		if w.Seconds < want || w.Seconds > want+5 {
			t.Fatalf("%s watched %ds, want %d (stats %+v)", w.UserID, w.Seconds, want, st)
		}
	}
	if st.TotalSeconds != st.TopWatchers[0].Seconds+st.TopWatchers[1].Seconds+st.TopWatchers[2].Seconds {
		t.Fatalf("total %d of %+v", st.TotalSeconds, st.TopWatchers)
	}
}
