package presence

import (
	"context"
	"fmt"
	"testing"
	"time"

	"roomcast/internal/testutil"
)

// factory builds a fresh Presence for one contract sub-test, with polling
// sessions expiring after ttl; it closes it after the test.
type factory func(t *testing.T, ttl time.Duration) Presence

// wait bounds how long the suite waits for what may lag (see runContract).
const wait = 10 * time.Second

// runContract is the contract every Presence implementation passes. A
// node's own joins and leaves count at once; the audience and the watch
// statistics may lag (the Redis presence writes them on its flush), so the
// suite waits for them.
func runContract(t *testing.T, newP factory) {
	t.Run("JoinCountLeave", func(t *testing.T) { contractJoinCountLeave(t, newP) })
	t.Run("PollersExpire", func(t *testing.T) { contractPollersExpire(t, newP) })
	t.Run("Audience", func(t *testing.T) { contractAudience(t, newP) })
	t.Run("IdentifiedLater", func(t *testing.T) { contractIdentifiedLater(t, newP) })
	t.Run("WatchTimeStats", func(t *testing.T) { contractWatchTimeStats(t, newP) })
}

func contractJoinCountLeave(t *testing.T, newP factory) {
	ctx := context.Background()
	p := newP(t, time.Minute)
	for i := 0; i < 3; i++ {
		if isNew, err := p.Join(ctx, "r", Member{Session: fmt.Sprint("s", i), UserID: fmt.Sprint("u", i)}); !isNew || err != nil {
			t.Fatalf("join %d: new %v err %v", i, isNew, err)
		}
	}
	if isNew, err := p.Join(ctx, "r", Member{Session: "s0", UserID: "u0"}); isNew || err != nil {
		t.Fatalf("second join of a session: new %v err %v", isNew, err)
	}
	if isNew, _ := p.Join(ctx, "other", Member{Session: "s0", UserID: "u0"}); !isNew {
		t.Fatal("rooms keep their own sessions")
	}
	wantCount(t, p, "r", 3)
	wantCount(t, p, "other", 1)
	if err := p.Leave(ctx, "r", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Leave(ctx, "r", "nobody"); err != nil {
		t.Fatalf("leaving an unknown session: %v", err)
	}
	wantCount(t, p, "r", 2)
	wantCount(t, p, "none", 0)
}

func contractPollersExpire(t *testing.T, newP factory) {
	ctx := context.Background()
	p := newP(t, 300*time.Millisecond)
	if isNew, err := p.Touch(ctx, "q", Member{Session: "p1", UserID: "u1"}); !isNew || err != nil {
		t.Fatalf("touch: new %v err %v", isNew, err)
	}
	if isNew, _ := p.Touch(ctx, "q", Member{Session: "p1", UserID: "u1"}); isNew {
		t.Fatal("a second touch is not a new session")
	}
	if _, err := p.Join(ctx, "q", Member{Session: "ws", UserID: "u2"}); err != nil {
		t.Fatal(err)
	}
	wantCount(t, p, "q", 2)
	testutil.WaitFor(t, "the silent poller to expire", wait, func() bool { n, _ := p.Count(ctx, "q"); return n == 1 })
	// The connection stays: only pollers expire.
	testutil.WaitFor(t, "the poller's watch time", wait, func() bool {
		st, err := p.Stats(ctx, "q")
		return err == nil && st.Viewers == 1 && st.TopWatchers[0].UserID == "u1"
	})
	wantCount(t, p, "q", 1)
}

func contractAudience(t *testing.T, newP factory) {
	ctx := context.Background()
	p := newP(t, time.Minute)
	base := time.Now().Add(-time.Hour)
	join := func(sess, user string, level int, since time.Duration) {
		t.Helper()
		if _, err := p.Join(ctx, "a", Member{Session: sess, UserID: user, Name: "n" + user, Level: level, Since: base.Add(since)}); err != nil {
			t.Fatal(err)
		}
	}
	join("s1", "low", 1, 0)
	join("s2", "early", 5, 0)
	join("s3", "late", 5, time.Minute)
	join("s4", "early", 5, 0) // the same user on a second connection
	join("s5", "", 9, 0)      // anonymous: never listed
	join("s6", "top", 7, 2*time.Minute)
	want := []string{"top", "early", "late", "low"}
	testutil.WaitFor(t, "the audience", wait, func() bool {
		aud, err := p.Audience(ctx, "a", 10)
		return err == nil && sameUsers(aud, want)
	})
	aud, err := p.Audience(ctx, "a", 2)
	if err != nil || !sameUsers(aud, want[:2]) {
		t.Fatalf("limited audience %v %v", aud, err)
	}
	if aud[0].Name != "ntop" || aud[0].Level != 7 || !aud[0].Since.Equal(base.Add(2*time.Minute)) {
		t.Fatalf("member fields lost: %+v", aud[0])
	}
	if aud, err := p.Audience(ctx, "empty", 10); err != nil || len(aud) != 0 {
		t.Fatalf("empty room's audience %v %v", aud, err)
	}
}

func contractIdentifiedLater(t *testing.T, newP factory) {
	ctx := context.Background()
	p := newP(t, time.Minute)
	since := time.Now().Add(-30 * time.Second)
	if _, err := p.Join(ctx, "i", Member{Session: "c", Since: since}); err != nil {
		t.Fatal(err)
	}
	// The connection's auth frame names its user: same session, not new.
	if isNew, err := p.Join(ctx, "i", Member{Session: "c", UserID: "alice", Name: "Alice", Level: 3}); isNew || err != nil {
		t.Fatalf("identifying: new %v err %v", isNew, err)
	}
	wantCount(t, p, "i", 1)
	testutil.WaitFor(t, "the identified user in the audience", wait, func() bool {
		aud, err := p.Audience(ctx, "i", 10)
		return err == nil && sameUsers(aud, []string{"alice"}) && aud[0].Since.Equal(since)
	})
}

func contractWatchTimeStats(t *testing.T, newP factory) {
	ctx := context.Background()
	p := newP(t, time.Minute)
	if st, err := p.Stats(ctx, "w"); err != nil || st.Online != 0 || st.Viewers != 0 || st.TopWatchers == nil {
		t.Fatalf("empty stats %+v %v", st, err)
	}
	now := time.Now()
	for i, secs := range []int{100, 60, 30} {
		m := Member{Session: fmt.Sprint("s", i), UserID: fmt.Sprint("u", i), Name: fmt.Sprint("N", i), Since: now.Add(-time.Duration(secs) * time.Second)}
		if _, err := p.Join(ctx, "w", m); err != nil {
			t.Fatal(err)
		}
	}
	// u0 comes back on a second connection: its times add up.
	if _, err := p.Join(ctx, "w", Member{Session: "again", UserID: "u0", Name: "N0", Since: now.Add(-20 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Join(ctx, "w", Member{Session: "anon", Since: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the peak", wait, func() bool { st, err := p.Stats(ctx, "w"); return err == nil && st.Peak == 5 })
	for _, s := range []string{"s0", "s1", "s2", "again", "anon"} {
		if err := p.Leave(ctx, "w", s); err != nil {
			t.Fatal(err)
		}
	}
	var st Stats
	testutil.WaitFor(t, "the watch time of everyone who left", wait, func() bool {
		var err error
		st, err = p.Stats(ctx, "w")
		return err == nil && st.Viewers == 3 && st.Online == 0
	})
	// Whole seconds, give or take the time the test took.
	near := func(got int64, want int) bool { return got >= int64(want) && got <= int64(want)+5 }
	tw := st.TopWatchers
	if st.Peak != 5 || len(tw) != 3 || tw[0].UserID != "u0" || tw[0].Name != "N0" || !near(tw[0].Seconds, 120) ||
		tw[1].UserID != "u1" || !near(tw[1].Seconds, 60) || tw[2].UserID != "u2" || !near(tw[2].Seconds, 30) {
		t.Fatalf("stats %+v", st)
	}
	if st.TotalSeconds != tw[0].Seconds+tw[1].Seconds+tw[2].Seconds || st.AvgSeconds != float64(st.TotalSeconds)/3 {
		t.Fatalf("total %d avg %v of %+v", st.TotalSeconds, st.AvgSeconds, tw)
	}
}

func wantCount(t *testing.T, p Presence, room string, want int) {
	t.Helper()
	if n, err := p.Count(context.Background(), room); n != want || err != nil {
		t.Fatalf("count of %s: %d (%v), want %d", room, n, err, want)
	}
}

func sameUsers(ms []Member, ids []string) bool {
	if len(ms) != len(ids) {
		return false
	}
	for i, m := range ms {
		if m.UserID != ids[i] {
			return false
		}
	}
	return true
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T, ttl time.Duration) Presence {
		p := NewMemory(ttl)
		t.Cleanup(func() { p.Close() })
		return p
	})
}
