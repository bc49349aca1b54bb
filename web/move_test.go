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

// The JS client follows "move" (R14): a first batch naming a better node is
// not acted on at once; at the next reconnect the client connects there,
// and messages sent on that node arrive.
func TestClientFollowsMove(t *testing.T) {
	s1 := startServer(t, nil)
	s2 := startServer(t, func(c *config.Config) { c.Origins = "*" }) // the page's origin is s1's
	s1.createRoom("mv", "Move room", "alice")
	s2.createRoom("mv", "Move room", "alice")
	tb := newTab(t)
	tb.navigate(s1.url + "/")
	// The test's WebSocket adds "move" to the first batch from s1, as a node
	// outside a hot room's placement does.
	setup := fmt.Sprintf(`(async () => {
		const { RoomClient } = await import('/client/roomcast.js');
		window.__got = []; window.__urls = []; window.__sockets = [];
		class WS extends WebSocket {
			constructor(u) { super(u); window.__urls.push(String(u)); window.__sockets.push(this); }
			set onmessage(fn) {
				super.onmessage = (ev) => {
					let d = ev.data;
					if (!this.__moved && d.startsWith('{"type":"batch"') && !String(this.url).includes(%[1]s)) {
						this.__moved = true;
						d = d.slice(0, -1) + ',"move":"http://' + %[1]s + '"}';
					}
					fn({ data: d });
				};
			}
		}
		const c = new RoomClient({ room: 'mv', WebSocket: WS });
		c.on('messages', (ms) => { for (const m of ms) window.__got.push(m.text || ''); });
		window.__c = c;
		c.start();
		return true;
	})()`, jsString(strings.TrimPrefix(s2.url, "http://")))
	if _, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](setup, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	tb.wait(`window.__c.state === 'open' && window.__sockets.length === 1`, 5*time.Second)
	bob1, bob2 := s1.token("bob", "Bob", auth.RoleViewer, 1), s2.token("bob", "Bob", auth.RoleViewer, 1)
	s1.chat("mv", bob1, "on s1")
	tb.wait(`window.__got.includes('on s1')`, 5*time.Second)
	if n := eval[int](tb, `window.__sockets.length`); n != 1 {
		t.Fatalf("the client dropped its connection for a move: %d sockets", n)
	}
	// The connection drops: the client reconnects to the node it was told.
	tb.do(chromedp.Evaluate[chromedp.Void](`window.__sockets.at(-1).close(); 1`))
	tb.wait(`window.__sockets.length >= 2 && window.__sockets.at(-1).readyState === 1 && window.__c.state === 'open'`, 10*time.Second)
	urls := eval[[]string](tb, `window.__urls`)
	if last := urls[len(urls)-1]; !strings.HasPrefix(last, "ws"+strings.TrimPrefix(s2.url, "http")+"/ws?") {
		t.Fatalf("reconnected to %s, want %s", last, s2.url)
	}
	s2.chat("mv", bob2, "on s2")
	tb.wait(`window.__got.includes('on s2')`, 5*time.Second)
}
