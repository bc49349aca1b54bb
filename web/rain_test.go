package web_test

import (
	"strings"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/config"
)

// TestRainInTheBrowser: the studio starts a rain and shows paid/left live;
// the viewer sees the rain, taps (at the throttled rate; taps in a row
// go together, one grab of several taps), sees the amount won; the rankings panel shows a gift sent; "My prizes" lists the
// packet and the total.
func TestRainInTheBrowser(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RainRate = 0 })
	_, anchor := s.createRoom("rainshow", "Rain show", "rita")
	var act struct {
		ID string `json:"id"`
	}
	body := map[string]any{"room": "rainshow", "title": "Rain", "starts_at": "2026-12-01T20:00:00Z", "prize_cents": 0,
		"questions": []map[string]any{{"text": "q", "options": []string{"a", "b"}, "answer": 0}},
		"rains":     []map[string]any{{"budget_cents": 300, "packets": 3, "max_per_user": 1, "duration_ms": 30000}}}
	if code := s.do("POST", "/api/activities", anchor, body, &act); code != 201 {
		t.Fatalf("create: %d", code)
	}
	viewer := newTab(t)
	vic := s.token("rob", "Rob", auth.RoleViewer, 5)
	viewer.navigate(s.url + "/room/rainshow#token=" + vic)
	viewer.wait(`document.body.dataset.transport === 'ws'`, 10*time.Second)
	if code := s.do("POST", "/api/rooms/rainshow/messages", vic, map[string]any{"kind": "gift", "gift": map[string]any{"id": "heart", "count": 2}}, nil); code != 201 {
		t.Fatalf("gift: %d", code)
	}
	viewer.do(chromedpClick(`[data-period="all"]`))
	viewer.wait(`document.querySelector('.rank-list').textContent.includes('Rob') && document.querySelector('.rank-list').textContent.includes('2.00 · 2 gifts')`, 15*time.Second)

	studio := newTab(t)
	studio.navigate(s.url + "/studio#token=" + anchor)
	studio.wait(`!!document.querySelector('#rain-list li button') && !document.querySelector('#rain-list li button').disabled`, 15*time.Second)
	studio.do(chromedpClick(`#rain-list li button`))
	viewer.wait(`!document.querySelector('#rain').hidden && !!document.querySelector('.rain-tap')`, 10*time.Second)
	// A DOM click (chromedp's scrolls the button under the sticky top bar in the small headless window).
	tap := "document.querySelector('.rain-tap').click()"
	viewer.do(chromedpEval(tap))
	viewer.wait(`document.querySelector('.rain-note').textContent.startsWith('+')`, 10*time.Second)
	won := eval[string](viewer, `document.querySelector('.rain-note').textContent`)
	studio.wait(`document.querySelector('.rain-live').textContent.includes('left 2 packets') && document.querySelector('.rain-live').textContent.includes('1 winners')`, 10*time.Second)
	// A second tap after the throttled gap: max_per_user 1 → "You have your packets."
	viewer.wait(`(window.roomcastPage.rain.lastTap = 0, true)`, time.Second)
	viewer.do(chromedpEval(tap))
	viewer.wait(`document.querySelector('.rain-note').textContent === 'You have your packets.'`, 10*time.Second)
	// Three taps in a row go together: in one grab of 3 taps, or — if the
	// last grab's window was over — the first at once and the next two in
	// one grab when the window closes; the server counts every tap (the
	// studio's grabs: 2 + 3).
	viewer.wait(`window.roomcastPage.rain.grabs === 2 && window.roomcastPage.rain.taps === 2`, 5*time.Second)
	viewer.do(chromedpEval(`(() => { const r = window.roomcastPage.rain; for (let i = 0; i < 3; i++) { r.lastTap = 0; r.tap(); } })()`))
	viewer.wait(`(r => r.taps === 5 && r.pending === 0 && r.flushTimer === 0 && r.grabs <= 4 && r.lastTaps >= 2)(window.roomcastPage.rain)`, 10*time.Second)
	studio.wait(`document.querySelector('.rain-live').textContent.includes('5 grabs')`, 10*time.Second)
	// The packet is in SQL at once (memory mode): "My prizes" lists it.
	viewer.do(chromedpEval(`document.querySelector('#prizes-btn').click()`))
	viewer.wait(`document.querySelector('#prizes').textContent.includes('red packet (rain 0)') && document.querySelector('#prizes').textContent.includes('Total '+`+jsString(strings.TrimSuffix(won[1:], "!"))+`)`, 10*time.Second)
}
