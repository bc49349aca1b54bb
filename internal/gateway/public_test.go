package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/errs"
	"roomcast/internal/presence"
	"roomcast/internal/testutil"
)

func TestGuestTokens(t *testing.T) {
	r := newRig(t, nil)
	var out struct {
		Token string `json:"token"`
		User  struct {
			ID    string `json:"id"`
			Level int    `json:"level"`
		} `json:"user"`
	}
	if st := decodeBody(t, r.call(t, "POST", "/api/guest", "", ""), &out); st != 200 || out.Token == "" || out.User.Level != 0 {
		t.Fatalf("guest: %d %+v", st, out)
	}
	c, err := r.signer.Verify(out.Token)
	if err != nil || c.Sub != out.User.ID || c.Role != auth.RoleViewer {
		t.Fatalf("guest token %+v %v", c, err)
	}
	off := newRig(t, func(c *config.Config) { c.Guest = false })
	expectError(t, off.call(t, "POST", "/api/guest", "", ""), 403, errs.Forbidden)
}

func TestGiftsAudienceStatsAndRoute(t *testing.T) {
	r := newRig(t, nil)
	var gifts struct {
		Gifts []struct {
			ID         string `json:"id"`
			ValueCents int64  `json:"value_cents"`
		} `json:"gifts"`
	}
	if decodeBody(t, r.call(t, "GET", "/api/gifts", "", ""), &gifts); len(gifts.Gifts) == 0 || gifts.Gifts[0].ValueCents <= 0 {
		t.Fatalf("gifts %+v", gifts)
	}
	ctx := context.Background()
	for i, lvl := range []int{5, 90, 40} {
		id := string(rune('a' + i))
		if _, err := r.pres.Join(ctx, "a", presence.Member{Session: "s" + id, UserID: "u" + id, Name: id, Level: lvl}); err != nil {
			t.Fatal(err)
		}
	}
	var aud struct {
		Online   int `json:"online"`
		Audience []struct {
			ID    string `json:"id"`
			Level int    `json:"level"`
		} `json:"audience"`
	}
	if decodeBody(t, r.call(t, "GET", "/api/rooms/a/audience?limit=2", "", ""), &aud); aud.Online != 3 || len(aud.Audience) != 2 || aud.Audience[0].Level != 90 {
		t.Fatalf("audience %+v", aud)
	}
	expectError(t, r.call(t, "GET", "/api/rooms/a/audience?limit=501", "", ""), 400, errs.BadRequest)
	expectError(t, r.call(t, "GET", "/api/rooms/zz/audience", "", ""), 404, errs.RoomNotFound)
	var stats struct {
		Online int   `json:"online"`
		Likes  int64 `json:"likes"`
	}
	if decodeBody(t, r.call(t, "GET", "/api/rooms/a/stats", "", ""), &stats); stats.Online != 3 || stats.Likes != 7 {
		t.Fatalf("stats %+v", stats)
	}
	var route struct {
		Transport   string `json:"transport"`
		WSURL       string `json:"ws_url"`
		PollURL     string `json:"poll_url"`
		PollAfterMS int    `json:"poll_after_ms"`
	}
	if st := decodeBody(t, r.call(t, "GET", "/api/route?room=a&uid=u1", "", ""), &route); st != 200 || route.Transport == "" ||
		!strings.HasSuffix(route.WSURL, "/ws?room=a") || !strings.HasSuffix(route.PollURL, "/api/rooms/a/messages") || route.PollAfterMS != 1500 {
		t.Fatalf("route %d %+v", st, route)
	}
	expectError(t, r.call(t, "GET", "/api/route?uid="+strings.Repeat("u", 129), "", ""), 400, errs.BadRequest)
}

// TestWebSocketAnswerFrame: quiz answers over the WebSocket need a user and
// carry the quiz's refusal back in an error frame with the frame's id.
func TestWebSocketAnswerFrame(t *testing.T) {
	r := newRig(t, nil)
	anon := r.dial(t, "room=a", nil)
	if f := exchange(t, anon, `{"type":"answer","id":"q1","n":1,"option":0}`); f.Type != "error" || f.ID != "q1" || f.Error.Code != errs.Unauthorized {
		t.Fatalf("anonymous answer %+v", f)
	}
	c := r.dial(t, "room=a&token="+r.token(t, "u1", auth.RoleViewer, 1), nil)
	testutil.WaitFor(t, "both connections to attach", 10*time.Second, func() bool { return len(r.node.attached()) == 2 })
	if f := exchange(t, c, `{"type":"answer","id":"q2","n":1,"option":0}`); f.Type != "error" || f.ID != "q2" || f.Error.Code != errs.NotFound {
		t.Fatalf("answer without a running quiz %+v", f)
	}
}
