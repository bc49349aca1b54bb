package signin_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roomcast/internal/signin"
	"roomcast/internal/store"
)

func TestCodesWorkOnceAndExpire(t *testing.T) {
	st, err := store.OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, now := context.Background(), time.Now()

	code, err := signin.Issue(ctx, st, now)
	if err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 8 { // concurrent redeemers: exactly one wins
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := signin.Redeem(ctx, st, code, now); err == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d redeemers succeeded, want 1", ok.Load())
	}

	old, _ := signin.Issue(ctx, st, now)
	if _, err := signin.Redeem(ctx, st, old, now.Add(signin.CodeTTL+time.Second)); !errors.Is(err, signin.ErrBadCode) {
		t.Errorf("an expired code: %v", err)
	}
	for _, bad := range []string{"", "nope", "0123456789abcdef0123456789abcdef"} {
		if _, err := signin.Redeem(ctx, st, bad, now); !errors.Is(err, signin.ErrBadCode) {
			t.Errorf("code %q: %v", bad, err)
		}
	}
	// An anchor's code signs in as that anchor.
	ac, _ := signin.IssueFor(ctx, st, now, signin.Grant{Anchor: "alice"})
	if g, err := signin.Redeem(ctx, st, ac, now); err != nil || g.Anchor != "alice" {
		t.Errorf("anchor code: %+v %v", g, err)
	}
	// Issuing tidies expired codes away.
	stale, _ := signin.Issue(ctx, st, now.Add(-time.Hour))
	if _, err := signin.Issue(ctx, st, now); err != nil {
		t.Fatal(err)
	}
	if _, err := signin.Redeem(ctx, st, stale, now.Add(-time.Hour)); !errors.Is(err, signin.ErrBadCode) {
		t.Errorf("an expired code survived tidying: %v", err)
	}
}
