package app

import (
	"fmt"
	"sync"
	"testing"

	"roomcast/internal/invite"
	"roomcast/internal/rankings"
)

// TestInvitations: codes, each refusal with its own code, and exactly one
// redemption (and one card each) when 20 users race for one code.
func TestInvitations(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.token("alice", "", 1), s.token("bob", "", 1), s.token("carol", "", 1)
	var c1, c2 struct{ Code string }
	if code := s.do("POST", "/api/invitations", alice, nil, &c1); code != 201 || len(c1.Code) != 10 {
		t.Fatalf("create: %d %+v", code, c1)
	}
	if code := s.do("POST", "/api/invitations", alice, nil, &c2); code != 200 || c2 != c1 {
		t.Fatalf("the open code again: %d %+v", code, c2)
	}
	if code, c := errCode(t, s, "POST", "/api/invitations", "", nil); code != 401 || c != "unauthorized" {
		t.Fatalf("no token: %d %s", code, c)
	}
	if code, c := errCode(t, s, "POST", "/api/invitations/"+c1.Code+"/redeem", alice, nil); code != 409 || c != invite.CodeOwnInvitation {
		t.Fatalf("own code: %d %s", code, c)
	}
	if code, c := errCode(t, s, "POST", "/api/invitations/NOPE/redeem", bob, nil); code != 404 || c != invite.CodeUnknown {
		t.Fatalf("unknown code: %d %s", code, c)
	}
	var red invite.Redemption
	if code := s.do("POST", "/api/invitations/"+c1.Code+"/redeem", bob, nil, &red); code != 200 || red.Inviter != "alice" || red.CardsEach != 1 {
		t.Fatalf("redeem: %d %+v", code, red)
	}
	if code, c := errCode(t, s, "POST", "/api/invitations/"+c1.Code+"/redeem", carol, nil); code != 409 || c != invite.CodeInvitationUsed {
		t.Fatalf("used code: %d %s", code, c)
	}
	var c3 struct{ Code string }
	if code := s.do("POST", "/api/invitations", alice, nil, &c3); code != 201 || c3.Code == c1.Code {
		t.Fatalf("a new code after the first was used: %d %+v", code, c3)
	}
	if code, c := errCode(t, s, "POST", "/api/invitations/"+c3.Code+"/redeem", bob, nil); code != 409 || c != invite.CodeAlreadyRedeemed {
		t.Fatalf("second redemption: %d %s", code, c)
	}
	// 20 users race for c3: one wins; alice gets one more card, not 20.
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := range 20 {
		tok := s.token(fmt.Sprint("racer", i), "", 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, c := errCode(t, s, "POST", "/api/invitations/"+c3.Code+"/redeem", tok, nil)
			mu.Lock()
			codes[fmt.Sprint(code, c)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes["200"] != 1 || codes["409"+invite.CodeInvitationUsed] != 19 {
		t.Fatalf("race: %v", codes)
	}
	for user, want := range map[string]int{"alice": 2, "bob": 1, "carol": 0} {
		var me struct{ Cards int }
		if s.do("GET", "/api/me", s.token(user, "", 1), nil, &me); me.Cards != want {
			t.Fatalf("%s has %d cards, want %d", user, me.Cards, want)
		}
	}
}

// TestGiftRankings: gifts sent count into the room's rankings at once.
func TestGiftRankings(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("rk")
	for _, g := range []struct {
		user, gift string
		count      int
	}{{"ann", "heart", 3}, {"bob", "star", 1}, {"ann", "rose", 5}, {"cy", "rose", 1}} {
		if code, _ := s.send("rk", s.token(g.user, "", 1), map[string]any{"kind": "gift", "gift": map[string]any{"id": g.gift, "count": g.count}}); code != 201 {
			t.Fatalf("send: %d", code)
		}
	}
	var out struct {
		Rankings []rankings.Entry `json:"rankings"`
	}
	for _, period := range []string{"all", "day", ""} {
		if code := s.do("GET", "/api/rooms/rk/rankings?period="+period+"&limit=2", "", nil, &out); code != 200 ||
			fmt.Sprint(out.Rankings) != "[{bob name-bob 500 1} {ann name-ann 350 8}]" {
			t.Fatalf("%s: %d %+v", period, code, out)
		}
	}
	if code := s.do("GET", "/api/rooms/rk/rankings?period=session", "", nil, &out); code != 200 || len(out.Rankings) != 0 {
		t.Fatalf("session (never live): %d %+v", code, out)
	}
	for q, want := range map[string]int{"period=week": 400, "limit=0x": 400, "limit=500": 400} {
		if code, c := errCode(t, s, "GET", "/api/rooms/rk/rankings?"+q, "", nil); code != want || c != "bad_request" {
			t.Fatalf("%s: %d %s", q, code, c)
		}
	}
	if code, c := errCode(t, s, "GET", "/api/rooms/none/rankings", "", nil); code != 404 {
		t.Fatalf("unknown room: %d %s", code, c)
	}
}
