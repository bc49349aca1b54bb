package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestInvitationsRedeemOnce: the refusals, and one redemption per code and
// per user under concurrency.
func TestInvitationsRedeemOnce(t *testing.T) {
	for name, mk := range storeNodes() {
		t.Run(name, func(t *testing.T) { invitationsOnce(t, mk(t)) })
	}
}

func invitationsOnce(t *testing.T, nodes []*Store) {
	ctx := context.Background()
	s := nodes[0]
	now := time.Now()
	if _, err := s.OpenInvitation(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open before create: %v", err)
	}
	for _, c := range []string{"C1", "C2"} {
		if err := s.CreateInvitation(ctx, c, "a", now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateInvitation(ctx, "C1", "b", now); !errors.Is(err, ErrConflict) {
		t.Fatalf("taken code: %v", err)
	}
	if _, err := s.RedeemInvitation(ctx, "C1", "a", 1, now); !errors.Is(err, ErrOwnInvitation) {
		t.Fatalf("own: %v", err)
	}
	if _, err := s.RedeemInvitation(ctx, "ZZ", "b", 1, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	for i := range 10 { // "b" redeems both codes at once; 10 others race for them
		for _, code := range []string{"C1", "C2"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				user := fmt.Sprint("u", i)
				if i == 0 {
					user = "b"
				}
				_, err := nodes[i%3].RedeemInvitation(ctx, code, user, 1, now)
				mu.Lock()
				got[fmt.Sprint(err)]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if got["<nil>"] != 2 {
		t.Fatalf("redemptions %v", got)
	}
	var redeemed int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM invitations WHERE redeemed_by = 'b'`).Scan(&redeemed); err != nil || redeemed > 1 {
		t.Fatalf("b redeemed %d codes (%v)", redeemed, err)
	}
	cards, err := s.Cards(ctx, []string{"a"})
	if err != nil || cards["a"] != 2 {
		t.Fatalf("owner's cards %v %v", cards, err)
	}
}
