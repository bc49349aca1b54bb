package moderation

import (
	"context"
	"testing"
	"time"

	"roomcast/internal/testutil"
)

// factory builds a fresh State allowing n sends per window per user for one
// contract sub-test; it closes it after the test.
type factory func(t *testing.T, n int, per time.Duration) State

// runContract is the contract every State implementation passes.
func runContract(t *testing.T, newState factory) {
	t.Run("RateLimitBurst", func(t *testing.T) { contractRateLimitBurst(t, newState) })
	t.Run("RateLimitRefills", func(t *testing.T) { contractRateLimitRefills(t, newState) })
	t.Run("Unlimited", func(t *testing.T) { contractUnlimited(t, newState) })
	t.Run("MutePerRoom", func(t *testing.T) { contractMutePerRoom(t, newState) })
	t.Run("KickPerRoom", func(t *testing.T) { contractKickPerRoom(t, newState) })
	t.Run("ReadYourWrites", func(t *testing.T) { contractReadYourWrites(t, newState) })
}

func contractRateLimitBurst(t *testing.T, newState factory) {
	s := newState(t, 3, time.Minute)
	for i := 0; i < 3; i++ {
		if ok, _ := allow(t, s, "u"); !ok {
			t.Fatalf("send %d of the burst refused", i)
		}
	}
	ok, wait := allow(t, s, "u")
	if ok || wait <= 15*time.Second || wait > 20*time.Second+time.Millisecond {
		t.Fatalf("4th send: ok %v wait %v (want about a third of the window)", ok, wait)
	}
	if ok, _ := allow(t, s, "other"); !ok {
		t.Fatal("limits are per user")
	}
}

func contractRateLimitRefills(t *testing.T, newState factory) {
	s := newState(t, 1, 2*time.Second)
	if ok, _ := allow(t, s, "u"); !ok {
		t.Fatal("first send refused")
	}
	ok, wait := allow(t, s, "u")
	if ok || wait <= 0 || wait > 2*time.Second+time.Millisecond {
		t.Fatalf("second send: ok %v wait %v", ok, wait)
	}
	testutil.WaitFor(t, "the bucket to refill", 10*time.Second, func() bool { ok, _ := allow(t, s, "u"); return ok })
}

func contractUnlimited(t *testing.T, newState factory) {
	s := newState(t, 0, 0)
	for i := 0; i < 100; i++ {
		if ok, wait := allow(t, s, "u"); !ok || wait != 0 {
			t.Fatalf("send %d with no limit: ok %v wait %v", i, ok, wait)
		}
	}
}

func contractMutePerRoom(t *testing.T, newState factory) {
	ctx := context.Background()
	s := newState(t, 0, 0)
	muted := func(room, user string) bool { return ask(t, s.Muted, room, user) }
	if err := s.Mute(ctx, "r", "u", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !muted("r", "u") || muted("other", "u") || muted("r", "v") {
		t.Fatal("a mute holds for its room and user only")
	}
	// A send asks Kicked, then Muted: an unmute in between counts.
	if k, err := s.Kicked(ctx, "r", "u"); k || err != nil {
		t.Fatalf("kicked %v %v", k, err)
	}
	if err := s.Unmute(ctx, "r", "u"); err != nil {
		t.Fatal(err)
	}
	if muted("r", "u") {
		t.Fatal("still muted after unmute")
	}
	if err := s.Mute(ctx, "r", "u", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if muted("r", "u") {
		t.Fatal("a mute ending in the past holds")
	}
	if err := s.Mute(ctx, "r", "u", time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the mute to end", 10*time.Second, func() bool { return !muted("r", "u") })
}

func contractKickPerRoom(t *testing.T, newState factory) {
	ctx := context.Background()
	s := newState(t, 0, 0)
	kicked := func(room, user string) bool { return ask(t, s.Kicked, room, user) }
	if err := s.Kick(ctx, "r", "k", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Mute(ctx, "r", "m", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !kicked("r", "k") || kicked("other", "k") || kicked("r", "m") {
		t.Fatal("a kick holds for its room and user only")
	}
	if m, _ := s.Muted(ctx, "r", "k"); m {
		t.Fatal("a kick is not a mute")
	}
	if kicked("r", "m") {
		t.Fatal("a mute is not a kick")
	}
	if m, _ := s.Muted(ctx, "r", "m"); !m {
		t.Fatal("the mute asked after a kick check was lost")
	}
	if err := s.Kick(ctx, "r", "short", time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the kick to end", 10*time.Second, func() bool { return !kicked("r", "short") })
}

// contractReadYourWrites: a State that has answered for a room answers the
// changes made through it at once, lifts included.
func contractReadYourWrites(t *testing.T, newState factory) {
	ctx := context.Background()
	s := newState(t, 0, 0)
	if ask(t, s.Muted, "r", "u") || ask(t, s.Kicked, "r", "u") {
		t.Fatal("muted or kicked before any change")
	}
	for i := 0; i < 3; i++ {
		if err := s.Mute(ctx, "r", "u", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if !ask(t, s.Muted, "r", "u") {
			t.Fatalf("round %d: the mute is not seen at once", i)
		}
		if err := s.Unmute(ctx, "r", "u"); err != nil {
			t.Fatal(err)
		}
		if ask(t, s.Muted, "r", "u") {
			t.Fatalf("round %d: the unmute is hidden by the mute", i)
		}
	}
	if err := s.Kick(ctx, "r", "u", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !ask(t, s.Kicked, "r", "u") || ask(t, s.Muted, "r", "u") {
		t.Fatal("the kick is not seen at once, or seen as a mute")
	}
	if err := s.Kick(ctx, "r", "u", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if ask(t, s.Kicked, "r", "u") {
		t.Fatal("a kick ending in the past still holds")
	}
	// A shorter mute replaces a longer one and ends by time.
	if err := s.Mute(ctx, "r", "v", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Mute(ctx, "r", "v", time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the shortened mute to end", 10*time.Second, func() bool { return !ask(t, s.Muted, "r", "v") })
}

// allow asks s whether user may send.
func allow(t *testing.T, s State, user string) (bool, time.Duration) {
	t.Helper()
	ok, wait, err := s.Allow(context.Background(), user)
	if err != nil {
		t.Fatalf("allow %s: %v", user, err)
	}
	return ok, wait
}

// ask returns what Muted or Kicked says of user in room.
func ask(t *testing.T, q func(ctx context.Context, room, user string) (bool, error), room, user string) bool {
	t.Helper()
	yes, err := q(context.Background(), room, user)
	if err != nil {
		t.Fatal(err)
	}
	return yes
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T, n int, per time.Duration) State {
		s := NewMemory(n, per)
		t.Cleanup(func() { s.Close() })
		return s
	})
}
