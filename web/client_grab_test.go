package web_test

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"roomcast/internal/auth"
	"roomcast/internal/config"
)

// TestClientModuleGrab: RoomClient.grab sends one grab of several taps
// over the WebSocket, JSON and protobuf, and resolves with the packets'
// cents summed and packets, taps and admitted (a rain of 1-cent packets,
// 2 a user at most: 3 taps win 2 packets, 2 cents).
func TestClientModuleGrab(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RainRate = 0 })
	_, anchor := s.createRoom("cg", "Grab room", "alice")
	var act struct {
		ID string `json:"id"`
	}
	body := map[string]any{"room": "cg", "title": "Rain", "starts_at": "2026-12-01T20:00:00Z", "prize_cents": 0,
		"questions": []map[string]any{{"text": "q", "options": []string{"a", "b"}, "answer": 0}},
		"rains":     []map[string]any{{"budget_cents": 10, "packets": 10, "max_per_user": 2, "duration_ms": 60000}}}
	if code := s.do("POST", "/api/activities", anchor, body, &act); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if code := s.do("POST", "/api/activities/"+act.ID+"/rains/0/start", anchor, nil, nil); code != 200 {
		t.Fatalf("start: %d", code)
	}
	tb := newTab(t)
	tb.navigate(s.url + "/")
	for _, format := range []string{"json", "proto"} {
		tok := s.token("g"+format, "G", auth.RoleViewer, 1)
		run := fmt.Sprintf(`(async () => {
			const { RoomClient } = await import('/client/roomcast.js');
			const c = new RoomClient({ room: 'cg', token: %s, format: %s });
			let authed = false;
			c.on('auth', () => { authed = true; });
			c.start();
			for (let i = 0; i < 200 && !(authed && c.state === 'open'); i++) await new Promise((r) => setTimeout(r, 50));
			const g = await c.grab(%s, 0, 3);
			c.close();
			return JSON.stringify(g);
		})()`, jsString(tok), jsString(format), jsString(act.ID))
		got, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](run, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if got != `{"amount_cents":2,"packets":2,"taps":3,"admitted":3}` {
			t.Fatalf("%s: grab answered %s", format, got)
		}
	}
}
