package web_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"roomcast/internal/auth"
	"roomcast/internal/config"
)

// The client module on its own: it polls while the route service says so,
// returns to the WebSocket when the route allows it, heartbeats, resumes
// with its cursor after a drop, and hands out every message once, in order.
func TestClientModule(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RenderBudget = 0 }) // pure seq order: no gap is allowed
	s.createRoom("c1", "Client room", "alice")
	if code := s.do("PUT", "/api/admin/route", testAdminKey, map[string]any{"percent": 0}, nil); code != 200 {
		t.Fatalf("PUT /api/admin/route: %d", code)
	}
	tb := newTab(t)
	tb.navigate(s.url + "/") // any roomcast page: same origin
	setup := `(async () => {
		const { RoomClient } = await import('/client/roomcast.js');
		window.__got = []; window.__urls = []; window.__pings = 0; window.__transports = []; window.__sockets = [];
		class WS extends WebSocket {
			constructor(u) { super(u); window.__urls.push(String(u)); window.__sockets.push(this); }
			send(d) { if (d === '{"type":"ping"}') window.__pings++; super.send(d); }
		}
		const c = new RoomClient({ room: 'c1', WebSocket: WS, heartbeatMs: 200, routeCheckMs: 300 });
		c.on('messages', (ms) => { for (const m of ms) window.__got.push({ seq: m.seq, text: m.text || '' }); });
		c.on('transport', (e) => window.__transports.push(e.transport + ':' + e.reason));
		window.__c = c;
		c.start();
		return true;
	})()`
	if _, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](setup, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	tb.wait(`window.__transports.includes('poll:route')`, 3*time.Second)

	bob := s.token("bob", "Bob", auth.RoleViewer, 1)
	sent := 0
	send := func(n int) {
		for range n {
			sent++
			s.chat("c1", bob, fmt.Sprintf("m%d", sent))
		}
	}
	arrived := func() {
		t.Helper()
		tb.wait(fmt.Sprintf(`window.__got.some(m => m.text === 'm%d')`, sent), 5*time.Second)
	}
	send(3)
	arrived()

	// The route service allows the WebSocket again: the client moves over.
	if code := s.do("PUT", "/api/admin/route", testAdminKey, map[string]any{"percent": 100}, nil); code != 200 {
		t.Fatalf("PUT /api/admin/route: %d", code)
	}
	tb.wait(`window.__transports.at(-1).startsWith('ws:') && window.__c.state === 'open'`, 3*time.Second)
	send(3)
	arrived()
	tb.wait(`window.__pings >= 2`, 5*time.Second) // heartbeats every 200 ms

	// A drop: the client reconnects with its cursor and misses nothing.
	tb.do(chromedp.Evaluate[chromedp.Void](`window.__sockets.at(-1).close(); 1`))
	send(3)
	tb.wait(`window.__sockets.length >= 2 && window.__sockets.at(-1).readyState === 1 && window.__c.state === 'open'`, 5*time.Second)
	arrived()
	send(2)
	arrived()
	urls := eval[[]string](tb, `window.__urls`)
	if last := urls[len(urls)-1]; !strings.Contains(last, "cursor=") {
		t.Errorf("reconnected without a cursor: %s", last)
	} else if epoch := eval[string](tb, `window.__c.epoch || ''`); epoch == "" || !strings.Contains(last, "epoch="+epoch) {
		t.Errorf("reconnected without the cursor's epoch %q: %s", epoch, last)
	}

	// Every message once, in seq order, no gap.
	type got struct {
		Seq  uint64 `json:"seq"`
		Text string `json:"text"`
	}
	msgs := eval[[]got](tb, `window.__got`)
	texts := map[string]int{}
	for i, m := range msgs {
		texts[m.Text]++
		if i > 0 && m.Seq != msgs[i-1].Seq+1 {
			t.Errorf("seq %d after %d: a gap or a duplicate", m.Seq, msgs[i-1].Seq)
		}
	}
	for i := 1; i <= sent; i++ {
		if n := texts[fmt.Sprintf("m%d", i)]; n != 1 {
			t.Errorf("m%d delivered %d times", i, n)
		}
	}
	t.Logf("%d messages, transports %v, %d sockets", len(msgs), eval[[]string](tb, `window.__transports`), len(urls))
}
