package app

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

// TestPresenceLikesAndSettings: online counts and like totals are pushed,
// enters are announced, the audience lists high levels first, watch time is
// recorded on leave, the poll interval table changes at run time, and the
// keyword filter applies.
func TestPresenceLikesAndSettings(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Tick = 20 * time.Millisecond
		c.Keywords = "badword"
	})
	s.createRoom("p")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	low := s.token("lowfan", auth.RoleViewer, 3)
	high := s.token("bigfan", auth.RoleViewer, 80)
	c1, _, err := s.dial(ctx, "room=p&token="+low)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.close()
	if _, err := c1.next(ctx, "batch"); err != nil {
		t.Fatal(err)
	}
	c2, _, err := s.dial(ctx, "room=p&token="+high)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.next(ctx, "batch"); err != nil {
		t.Fatal(err)
	}
	// c1 sees the online count reach 2 and an enter message naming bigfan
	// (in either order: the service writes enter messages on its own ticker).
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	for online, entered := false, false; !online || !entered; {
		f, err := c1.read(rctx)
		if err != nil {
			t.Fatalf("online count 2 seen: %v, enter message for bigfan seen: %v: %v", online, entered, err)
		}
		online = online || (f.Type == "online" && f.Count == 2)
		for _, m := range f.Messages {
			entered = entered || m.Text == "name-bigfan joined"
		}
	}
	var aud struct {
		Online   int `json:"online"`
		Audience []struct {
			ID    string `json:"id"`
			Level int    `json:"level"`
		} `json:"audience"`
	}
	s.do("GET", "/api/rooms/p/audience?limit=50", "", nil, &aud)
	if aud.Online != 2 || len(aud.Audience) != 2 || aud.Audience[0].ID != "bigfan" {
		t.Fatalf("audience: %+v", aud)
	}
	// Likes are counted and pushed as a total, never as messages.
	for i := 0; i < 3; i++ {
		if code, _ := s.send("p", low, map[string]string{"kind": "like"}); code != 202 {
			t.Fatalf("like: %d", code)
		}
	}
	for {
		f, err := c1.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == "batch" {
			for _, m := range f.Messages {
				if m.Kind == "like" {
					t.Fatal("a like was delivered as a message")
				}
			}
		}
		if f.Type == "likes" && f.Total == 3 {
			break
		}
	}
	// Watch time is recorded when bigfan leaves.
	time.Sleep(1100 * time.Millisecond)
	c2.close()
	var st struct {
		TopWatchers []struct {
			ID      string `json:"id"`
			Seconds int64  `json:"seconds"`
		} `json:"top_watchers"`
		Likes int64 `json:"likes"`
	}
	testutil.WaitFor(t, "watch time recorded", 5*time.Second, func() bool {
		s.do("GET", "/api/rooms/p/stats", "", nil, &st)
		return len(st.TopWatchers) == 1 && st.TopWatchers[0].ID == "bigfan" && st.TopWatchers[0].Seconds >= 1
	})
	if st.Likes != 3 {
		t.Fatalf("stats likes %d", st.Likes)
	}
	// The poll interval table changes at run time.
	if p := s.poll("p", nil, 15); p.PollAfterMS != 1500 {
		t.Fatalf("default poll_after_ms %d", p.PollAfterMS)
	}
	var out map[string]any
	if code := s.do("PUT", "/api/admin/poll-intervals", testAdminKey, map[string]any{"steps": []map[string]int{{"under": 0, "ms": 4200}}}, &out); code != 200 {
		t.Fatalf("set poll intervals: %d %v", code, out)
	}
	if p := s.poll("p", nil, 15); p.PollAfterMS != 4200 {
		t.Fatalf("poll_after_ms after the change: %d", p.PollAfterMS)
	}
	var route struct {
		Transport   string `json:"transport"`
		PollAfterMS int    `json:"poll_after_ms"`
	}
	s.do("PUT", "/api/admin/route", testAdminKey, map[string]any{"percent": 100, "deny_users": []string{"old-app-user"}}, &out)
	s.do("GET", "/api/route?uid=old-app-user", "", nil, &route)
	if route.Transport != "poll" || route.PollAfterMS != 4200 {
		t.Fatalf("route for a denied user: %+v", route)
	}
	s.do("GET", "/api/route?uid=someone", "", nil, &route)
	if route.Transport != "ws" {
		t.Fatalf("route at 100%%: %+v", route)
	}
	// Keyword filter (reject mode).
	if code, a := s.send("p", low, map[string]string{"kind": "chat", "text": "a BadWord here"}); code != 400 || a.Error.Code != "blocked_word" {
		t.Fatalf("blocked word: %d %+v", code, a)
	}
}

// TestGracefulShutdown: shutting down closes WebSocket viewers with 1001
// going away (after what was sent reached them) and readyz fails meanwhile.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("g")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := s.dial(ctx, "room=g")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.next(ctx, "batch"); err != nil {
		t.Fatal(err)
	}
	if code := s.do("GET", "/readyz", "", nil, nil); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	s.send("g", s.token("u", auth.RoleViewer, 1), map[string]string{"kind": "chat", "text": "last words"})
	s.client.CloseIdleConnections()
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = s.app.Shutdown(sctx)
	}()
	sawLast := false
	for {
		f, err := c.read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Fatalf("want close 1001, got %v", err)
			}
			break
		}
		for _, m := range f.Messages {
			sawLast = sawLast || m.Text == "last words"
		}
	}
	if !sawLast {
		t.Fatal("the message sent before shutdown was not delivered")
	}
}
