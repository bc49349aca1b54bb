package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

// A message sent through the API shows in the danmaku layer and in the chat
// panel (the time it takes is logged: latency is measured in benchmarks);
// the danmaku animate by transform in distinct lanes without a reflow per
// frame; sending, gifts and likes work from the page; high
// levels and gifts are styled distinctly; the hide switch hides danmaku.
func TestViewerPage(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("show", "Evening show", "alice")
	tb := newTab(t)
	tb.navigate(s.url + "/room/show")
	tb.wait(`document.body.dataset.transport === 'ws' && document.querySelector('#me').textContent.includes('guest')`, 5*time.Second)
	if got := eval[string](tb, `document.querySelector('#title').textContent`); got != "Evening show" {
		t.Fatalf("title %q", got)
	}
	if got := eval[string](tb, `document.body.dataset.status`); got != "idle" {
		t.Fatalf("status %q, want idle (offline)", got)
	}

	bob := s.token("bob", "Bob", auth.RoleViewer, 45)
	for i := range 3 {
		text := fmt.Sprintf("hello from the API %d", i)
		s.chat("show", bob, text)
		took := tb.wait(`[...document.querySelectorAll('#chat .line .text')].some(n => n.textContent === `+jsString(text)+`) &&
			[...document.querySelectorAll('#danmaku .dm')].some(n => n.textContent.includes(`+jsString(text)+`))`, 2*time.Second)
		t.Logf("message %d showed in the danmaku layer and the chat panel after %v (latency is measured in benchmarks)", i, took)
	}
	// Level 45 is "high level": styled in both places.
	if !eval[bool](tb, `!!document.querySelector('#chat .line.lvl-hi') && !!document.querySelector('#danmaku .dm.dm-hi')`) {
		t.Error("a high-level user's message is not styled distinctly")
	}
	checkDanmakuAnimation(t, tb, func() { s.chat("show", bob, "in flight while measured") })

	// Send from the page (over the WebSocket), a gift and a like.
	tb.do(chromedpSendKeys("#send-text", "typed in the page"), chromedpClick("#send-btn"))
	tb.wait(`[...document.querySelectorAll('#chat .line.mine .text')].some(n => n.textContent === 'typed in the page')`, 3*time.Second)
	tb.wait(`document.querySelectorAll('#gifts .gift').length >= 3`, 3*time.Second)
	tb.do(chromedpClick(`#gifts .gift[data-gift="rocket"]`))
	tb.wait(`!!document.querySelector('#chat .line.kind-gift') && !!document.querySelector('#danmaku .dm.dm-gift')`, 3*time.Second)
	tb.do(chromedpClick("#like"))
	tb.wait(`document.querySelector('#likes').textContent === '1'`, 4*time.Second)

	// Online count and enter notices.
	tb.wait(`Number(document.querySelector('#online').textContent) >= 1`, 3*time.Second)
	tb.wait(`!!document.querySelector('#chat .notice-enter')`, 3*time.Second)

	// The hide switch empties and hides the layer.
	tb.do(chromedpClick(".switch"))
	if !eval[bool](tb, `document.querySelector('#danmaku').hidden && document.querySelectorAll('#danmaku .dm').length === 0`) {
		t.Error("the danmaku switch did not hide danmaku")
	}
	s.chat("show", bob, "while hidden")
	tb.wait(`[...document.querySelectorAll('#chat .text')].some(n => n.textContent === 'while hidden')`, 2*time.Second)
	if n := eval[int](tb, `document.querySelectorAll('#danmaku .dm').length`); n != 0 {
		t.Errorf("%d danmaku added while hidden", n)
	}
}

// What users type is shown as text: no element, no script.
func TestViewerRendersUserTextAsText(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("xss", "<b>bold</b> title", "alice")
	evil := `<img src=x onerror="window.__xss=1">`
	mallory := s.token("mallory", `<img src=y onerror="window.__xss=2">`, auth.RoleViewer, 70)
	tb := newTab(t)
	tb.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	tb.navigate(s.url + "/room/xss")
	tb.wait(`document.body.dataset.transport === 'ws'`, 5*time.Second)
	// Text that tries to break the layout: a 200-character word, a
	// right-to-left override, stacked combining marks.
	long := strings.Repeat("W", 200)
	s.chat("xss", mallory, long)
	s.chat("xss", mallory, "\u202Eevil override")
	s.chat("xss", mallory, "Z"+strings.Repeat("\u0336\u0337\u0338\u0489", 40))
	tb.wait(`[...document.querySelectorAll('#chat .text')].some(n => n.textContent === `+jsString(long)+`)`, 2*time.Second)
	s.chat("xss", mallory, evil)
	tb.wait(`[...document.querySelectorAll('#chat .text')].some(n => n.textContent === `+jsString(evil)+`) &&
		[...document.querySelectorAll('#danmaku .dm')].some(n => n.textContent === `+jsString(evil)+`)`, 2*time.Second)
	time.Sleep(300 * time.Millisecond)
	if got := eval[string](tb, `String(window.__xss)`); got != "undefined" {
		t.Fatalf("window.__xss = %s: a message ran script", got)
	}
	if n := eval[int](tb, `document.querySelectorAll('#chat img, #danmaku img, #title b, h1 b').length`); n != 0 {
		t.Fatalf("%d elements made from user text", n)
	}
	if w := eval[int](tb, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("user text made the page %d px wide on a 390 px screen", w)
	}
	if !eval[bool](tb, `(() => { const c = document.querySelector('#chat'); return c.scrollWidth <= c.clientWidth; })()`) {
		t.Error("user text overflows the chat panel")
	}
	if !eval[bool](tb, `[...document.querySelectorAll('#chat .line')].every(l => l.getBoundingClientRect().height < 200)`) {
		t.Error("a chat line grew taller than 200 px")
	}
	if got := eval[string](tb, `document.querySelector('#title').textContent`); got != "<b>bold</b> title" {
		t.Errorf("title %q", got)
	}
	if !eval[bool](tb, `[...document.querySelectorAll('#chat .name')].some(n => n.textContent === `+jsString(`<img src=y onerror="window.__xss=2">`)+`)`) {
		t.Error("the user name is not shown as text")
	}
	// The page itself is protected by a policy with no inline script.
	resp, err := http.Get(s.url + "/room/xss")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

// With the WebSocket refused, the page receives messages by polling: when the
// route service says "poll", and when the server refuses the upgrade (three
// failed connects, then polling).
func TestViewerFallsBackToPolling(t *testing.T) {
	t.Run("route says poll", func(t *testing.T) {
		s := startServer(t, nil)
		s.createRoom("p1", "Polling room", "alice")
		if code := s.do("PUT", "/api/admin/route", testAdminKey, map[string]any{"percent": 0}, nil); code != 200 {
			t.Fatalf("PUT /api/admin/route: %d", code)
		}
		tb := newTab(t)
		tb.navigate(s.url + "/room/p1")
		tb.wait(`document.body.dataset.transport === 'poll'`, 5*time.Second)
		bob := s.token("bob", "Bob", auth.RoleViewer, 1)
		s.chat("p1", bob, "delivered by polling")
		tb.wait(`[...document.querySelectorAll('#chat .text')].some(n => n.textContent === 'delivered by polling')`, 5*time.Second)
		tb.wait(`[...document.querySelectorAll('#danmaku .dm')].some(n => n.textContent === 'delivered by polling')`, 1*time.Second)
		if got := eval[string](tb, `document.body.dataset.transportReason`); got != "route" {
			t.Errorf("polling because %q, want because the route service said so", got)
		}
		// The browser's polls after the first on a connection are read and
		// answered on the keep-alive path: its heads are ones it parses.
		testutil.WaitFor(t, "the browser's polls on the keep-alive path", 15*time.Second, func() bool {
			return s.metric("roomcast_keepalive_answers_total")-s.metric("roomcast_keepalive_takes_total") >= 2
		})
		// Sending works over HTTP.
		tb.do(chromedpSendKeys("#send-text", "sent while polling"), chromedpClick("#send-btn"))
		tb.wait(`[...document.querySelectorAll('#chat .line.mine .text')].some(n => n.textContent === 'sent while polling')`, 5*time.Second)
	})

	t.Run("upgrade refused", func(t *testing.T) {
		s := startServer(t, nil)
		s.createRoom("p2", "Refused room", "alice")
		// A front that refuses every WebSocket upgrade, as a proxy without
		// WebSocket support does; the route service still says "ws".
		target, _ := url.Parse(s.url)
		proxy := httputil.NewSingleHostReverseProxy(target)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/ws" {
				http.Error(w, "websocket refused", http.StatusForbidden)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(front.Close)
		tb := newTab(t, regexp.MustCompile(`WebSocket connection to .* failed`))
		tb.navigate(front.URL + "/room/p2")
		took := tb.wait(`document.body.dataset.transport === 'poll'`, 10*time.Second)
		t.Logf("fell back to polling after %v", took)
		if got := eval[string](tb, `document.body.dataset.transportReason`); got != "3 failed connects" {
			t.Errorf("fell back because %q, want after 3 failed connects", got)
		}
		bob := s.token("bob", "Bob", auth.RoleViewer, 1)
		s.chat("p2", bob, "polled through the front")
		tb.wait(`[...document.querySelectorAll('#chat .text')].some(n => n.textContent === 'polled through the front')`, 5*time.Second)
	})
}

// The list of rooms shows live state, titles as text, and updates itself.
func TestIndexPage(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("one", "First <i>room</i>", "alice")
	tb := newTab(t)
	tb.navigate(s.url + "/")
	tb.wait(`document.querySelectorAll('#other .card').length === 1`, 5*time.Second)
	if got := eval[string](tb, `document.querySelector('#other .card-title').textContent`); got != "First <i>room</i>" {
		t.Errorf("title %q", got)
	}
	if !eval[bool](tb, `!document.querySelector('#empty').hidden && document.querySelectorAll('.card-title *').length === 0`) {
		t.Error("empty state not shown, or a title became markup")
	}
	s.createRoom("two", "Second room", "carol")
	tb.wait(`document.querySelectorAll('#other .card').length === 2`, 8*time.Second)
	if got := eval[string](tb, `document.querySelector('#other .card a').getAttribute('href')`); !strings.HasPrefix(got, "/room/") {
		t.Errorf("card link %q", got)
	}
}

// The studio signs in with an anchor token, shows the stream key and the
// RTMP URL, its viewer chart moves when a viewer joins, and it moderates.
func TestStudio(t *testing.T) {
	rtmpPort := freePort(t)
	s := startServer(t, func(c *config.Config) { c.RTMP = fmt.Sprintf("127.0.0.1:%d", rtmpPort) })
	room, anchorTok := s.createRoom("studio1", "Studio show", "anna")
	tb := newTab(t)
	tb.navigate(s.url + "/studio#token=" + anchorTok)
	tb.wait(`document.querySelector('#stream-key').value === `+jsString(room.StreamKey), 5*time.Second)
	// The RTMP URL comes from /web/config.json, fetched on its own.
	tb.wait(`document.querySelector('#rtmp-url').value === `+jsString(fmt.Sprintf("rtmp://127.0.0.1:%d/live", rtmpPort)), 5*time.Second)
	if strings.Contains(eval[string](tb, `location.href`), "token=") {
		t.Error("the token stayed in the address bar")
	}
	tb.wait(`Number(document.querySelector('#chart-viewers').dataset.samples) >= 2 && document.querySelector('#chart-viewers').dataset.last === '1'`, 5*time.Second)
	before := eval[string](tb, `document.querySelector('#chart-viewers').toDataURL()`)

	viewer := newTab(t)
	viewer.navigate(s.url + "/room/studio1")
	tb.wait(`Number(document.querySelector('#chart-viewers').dataset.last) >= 2`, 5*time.Second)
	if after := eval[string](tb, `document.querySelector('#chart-viewers').toDataURL()`); after == before {
		t.Error("the viewer chart did not move")
	}

	// Moderation: remove a message, mute its author.
	dave := s.token("dave", "Dave", auth.RoleViewer, 3)
	id := s.chat("studio1", dave, "please remove me")
	tb.wait(`[...document.querySelectorAll('#mod-chat .line')].some(n => n.dataset.id === `+jsString(id)+`)`, 3*time.Second)
	viewer.wait(`[...document.querySelectorAll('#chat .line')].some(n => n.dataset.id === `+jsString(id)+`)`, 3*time.Second)
	tb.do(chromedpClick(`#mod-chat .line[data-id="` + id + `"] .mod-actions button`))
	tb.wait(`![...document.querySelectorAll('#mod-chat .line')].some(n => n.dataset.id === `+jsString(id)+`)`, 3*time.Second)
	viewer.wait(`![...document.querySelectorAll('#chat .line')].some(n => n.dataset.id === `+jsString(id)+`)`, 3*time.Second)

	s.chat("studio1", dave, "mute me")
	tb.wait(`[...document.querySelectorAll('#mod-chat .line')].some(n => n.dataset.user === 'dave')`, 3*time.Second)
	tb.do(chromedpClick(`#mod-chat .line[data-user="dave"] .mod-actions button:nth-child(2)`))
	tb.wait(`document.querySelector('#mod-status').textContent.includes('Muted dave')`, 3*time.Second)
	if code := s.do("POST", "/api/rooms/studio1/messages", dave, map[string]any{"kind": "chat", "text": "still here?"}, nil); code != 403 {
		t.Errorf("a muted user sent a message: %d", code)
	}

	// Key reset (two clicks) shows the new key.
	tb.do(chromedpClick("#key-reset"), chromedpClick("#key-reset"))
	tb.wait(`document.querySelector('#stream-key').value !== `+jsString(room.StreamKey)+` && document.querySelector('#stream-key').value.length > 8`, 3*time.Second)
}

// The studio refuses a viewer token with an explanation.
func TestStudioRefusesViewerToken(t *testing.T) {
	s := startServer(t, nil)
	tb := newTab(t)
	tb.navigate(s.url + "/studio#token=" + s.token("v", "V", auth.RoleViewer, 1))
	tb.wait(`!document.querySelector('#signin').hidden && document.querySelector('#signin-error').textContent.includes('anchor')`, 3*time.Second)
	// An anchor with no room gets the create form, and creating opens the dashboard.
	tok := s.token("newanchor", "New", auth.RoleAnchor, 1)
	tb.navigate(s.url + "/studio?token=" + tok) // a new document, not a fragment change
	tb.wait(`!document.querySelector('#create').hidden`, 3*time.Second)
	tb.do(chromedpSendKeys("#create-title", "Brand new"), chromedpSendKeys("#create-id", "brand-new"), chromedpClick("#create-form button"))
	tb.wait(`!document.querySelector('#dash').hidden && document.querySelector('#stream-key').value.startsWith('rk_')`, 3*time.Second)
	if got := eval[string](tb, `document.querySelector('#room-title').textContent`); got != "Brand new" {
		t.Errorf("room title %q", got)
	}
}

// A host app embeds the viewer page in an iframe and hands it its user's
// token with postMessage; the page then is that user (not a guest).
func TestViewerTokenFromHostApp(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("emb", "Embedded room", "alice")
	tok := s.token("hostuser", "Host User", auth.RoleViewer, 9)
	var host *httptest.Server
	host = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>host app</title>
<iframe id="live" src="%s/room/emb?host_origin=%s" width="800" height="600"></iframe>
<script>
window.addEventListener('message', (ev) => {
  if (ev.data && ev.data.type === 'roomcast:ready') {
    document.getElementById('live').contentWindow.postMessage({type: 'roomcast:token', token: %s}, %s);
  }
});
</script>`, s.url, url.QueryEscape(host.URL), jsString(tok), jsString(s.url))
	}))
	t.Cleanup(host.Close)
	tb := newTab(t)
	tb.navigate(host.URL)
	s.waitAudience("emb", "hostuser") // the host app's user joined the room
}

// danmakuFrames watches 20 animation frames of the danmaku layer while at
// least one item flies and reports, per frame, every item's inline style and
// the layout the page read from the layer's elements (offset*, client*,
// scroll*, getBoundingClientRect, getComputedStyle) during that frame.
const danmakuFrames = `new Promise((resolve) => {
	const layer = document.querySelector('#danmaku');
	let reads = 0;
	const undo = [];
	const count = (el) => { if (el instanceof Node && layer.contains(el)) reads++; };
	for (const [proto, names] of [[HTMLElement.prototype, ['offsetWidth', 'offsetHeight', 'offsetLeft', 'offsetTop']],
		[Element.prototype, ['clientWidth', 'clientHeight', 'scrollWidth', 'scrollHeight']]]) {
		for (const name of names) {
			const d = Object.getOwnPropertyDescriptor(proto, name);
			Object.defineProperty(proto, name, { configurable: true, get() { count(this); return d.get.call(this); } });
			undo.push(() => Object.defineProperty(proto, name, d));
		}
	}
	const rect = Element.prototype.getBoundingClientRect, cs = window.getComputedStyle;
	Element.prototype.getBoundingClientRect = function () { count(this); return rect.call(this); };
	window.getComputedStyle = function (el, ...rest) { count(el); return cs.call(this, el, ...rest); };
	undo.push(() => { Element.prototype.getBoundingClientRect = rect; window.getComputedStyle = cs; });
	const frames = [], start = performance.now();
	const f = () => {
		const items = [...layer.querySelectorAll('.dm')].map((n) => ({ text: n.textContent, style: n.getAttribute('style') || '' }));
		frames.push({ reads, items });
		reads = 0;
		if (frames.length < 20) { requestAnimationFrame(f); return; }
		undo.forEach((u) => u());
		resolve({ frames, ms: performance.now() - start });
	};
	requestAnimationFrame(f);
})`

// checkDanmakuAnimation proves the danmaku layer animates cheaply, whatever
// the machine's speed: while an item flies (send puts one in flight), every
// frame moves it by a transform alone (its inline style is a translate3d and
// nothing else), it moves right to left frame after frame, no frame reads
// layout from the layer (no forced reflow per frame), and the items in
// flight keep to distinct lanes. The frame rate is logged, not asserted:
// speed is measured in benchmarks.
func checkDanmakuAnimation(t *testing.T, tb *tab, send func()) {
	t.Helper()
	send()
	tb.wait(`[...document.querySelectorAll('#danmaku .dm')].some(n => n.textContent.includes('in flight while measured') && n.style.transform.startsWith('translate3d(') && !n.style.transform.includes('-200px'))`, 10*time.Second)
	type item struct {
		Text  string `json:"text"`
		Style string `json:"style"`
	}
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
		Frames []struct {
			Reads int    `json:"reads"`
			Items []item `json:"items"`
		} `json:"frames"`
		MS float64 `json:"ms"`
	}](danmakuFrames, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("danmaku animation: %d frames in %.0f ms (%.0f frames/s on this machine, not asserted)", len(res.Frames), res.MS, float64(len(res.Frames))*1000/res.MS)
	transform := regexp.MustCompile(`^transform: translate3d\((-?[0-9.]+)px, (-?[0-9.]+)px, 0px\);$`)
	lastX, moves := map[string]float64{}, 0
	for i, f := range res.Frames {
		if f.Reads != 0 {
			t.Errorf("frame %d read layout from the danmaku layer %d times (a reflow per frame)", i, f.Reads)
		}
		lanes := map[string]string{}
		for _, it := range f.Items {
			m := transform.FindStringSubmatch(it.Style)
			if m == nil {
				t.Fatalf("frame %d: a danmaku item's inline style is %q, want a translate3d transform only", i, it.Style)
			}
			if m[2] == "-200" {
				continue // waiting for a free lane, out of sight
			}
			if other, ok := lanes[m[2]]; ok {
				t.Errorf("frame %d: %q and %q in the same lane (y %s px) at once", i, other, it.Text, m[2])
			}
			lanes[m[2]] = it.Text
			x, _ := strconv.ParseFloat(m[1], 64)
			if prev, ok := lastX[it.Text]; ok {
				if x > prev {
					t.Errorf("frame %d: %q moved right, from x %.1f to %.1f", i, it.Text, prev, x)
				}
				if x < prev {
					moves++
				}
			}
			lastX[it.Text] = x
		}
	}
	if moves == 0 {
		t.Errorf("no danmaku item moved in %d frames: %+v", len(res.Frames), res.Frames)
	}
}
