package web_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"roomcast/internal/auth"
	"roomcast/internal/config"
)

// The client module with {format: 'proto'} in a real Chromium, on a roomcast
// page (under its Content-Security-Policy, so the codec must not eval): it
// negotiates roomcast.v1.proto, receives binary frames, authenticates,
// sends (chat, like, a refused gift), heartbeats, and resumes with its
// cursor after a drop, handing out every message once, in order.
func TestClientModuleProto(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RenderBudget = 0 })
	s.createRoom("cp", "Proto room", "alice")
	bob := s.token("bob", "Bob", auth.RoleViewer, 7)
	tb := newTab(t)
	tb.navigate(s.url + "/")
	setup := fmt.Sprintf(`(async () => {
		const { RoomClient } = await import('/client/roomcast.js');
		window.__got = []; window.__sockets = []; window.__pings = 0; window.__binary = 0; window.__online = [];
		class WS extends WebSocket {
			constructor(u, p) { super(u, p); window.__sockets.push(this);
				this.addEventListener('message', (e) => { if (e.data instanceof ArrayBuffer) window.__binary++; }); }
			send(d) { if (d instanceof Uint8Array && d.length === 5 && d[1] === 8 && d[2] === 1) window.__pings++; super.send(d); }
		}
		const c = new RoomClient({ room: 'cp', token: %s, format: 'proto', WebSocket: WS, heartbeatMs: 200 });
		c.on('messages', (ms) => { for (const m of ms) window.__got.push(m); });
		c.on('online', (n) => window.__online.push(n));
		c.on('auth', (e) => { window.__user = e.user; });
		window.__c = c;
		c.start();
		return true;
	})()`, jsString(bob))
	if _, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](setup, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	tb.wait(`window.__c.state === 'open' && window.__user === 'bob'`, 10*time.Second)
	if p := eval[string](tb, `window.__sockets[0].protocol`); p != "roomcast.v1.proto" {
		t.Fatalf("subprotocol %q", p)
	}
	tb.wait(`window.__online.length > 0 && window.__binary > 0`, 10*time.Second)

	// Sends over the protobuf socket: acks and a refusal with its code.
	type sendResult struct {
		Seq   float64 `json:"seq"`
		ID    string  `json:"id"`
		Likes float64 `json:"likes"`
		Code  string  `json:"code"`
	}
	run := func(expr string) sendResult {
		t.Helper()
		v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[sendResult](`(async () => { try { return await `+expr+`; } catch (e) { return { code: e.code }; } })()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if r := run(`window.__c.chat('via proto')`); r.Seq <= 0 || r.ID == "" {
		t.Fatalf("chat: %+v", r)
	}
	if r := run(`window.__c.like()`); r.Likes != 1 {
		t.Fatalf("like: %+v", r)
	}
	if r := run(`window.__c.gift('yacht')`); r.Code != "unknown_gift" {
		t.Fatalf("unknown gift: %+v", r)
	}
	if r := run(`window.__c.gift('heart', 2)`); r.Seq <= 0 {
		t.Fatalf("gift: %+v", r)
	}
	tb.wait(`window.__got.some(m => m.kind === 'gift' && m.gift.value_cents > 0 && m.user.id === 'bob' && m.user.level === 7)`, 10*time.Second)
	tb.wait(`window.__got.some(m => m.text === 'via proto' && m.scope === 'room' && m.room === 'cp' && m.ts > 0)`, 10*time.Second)
	tb.wait(`window.__pings >= 2`, 10*time.Second)

	// Messages from others, a drop, a resume with the cursor.
	alice := s.token("carol", "Carol", auth.RoleViewer, 1)
	for i := range 3 {
		s.chat("cp", alice, fmt.Sprintf("m%d", i))
	}
	tb.wait(`window.__got.some(m => m.text === 'm2')`, 10*time.Second)
	tb.do(chromedp.Evaluate[chromedp.Void](`window.__sockets.at(-1).close(); 1`))
	for i := 3; i < 6; i++ {
		s.chat("cp", alice, fmt.Sprintf("m%d", i))
	}
	tb.wait(`window.__sockets.length >= 2 && window.__c.state === 'open'`, 10*time.Second)
	tb.wait(`window.__got.some(m => m.text === 'm5')`, 10*time.Second)
	if u := eval[string](tb, `window.__sockets.at(-1).url`); !regexp.MustCompile(`cursor=\d+`).MatchString(u) {
		t.Errorf("reconnected without a cursor: %s", u)
	}
	seqs := eval[[]float64](tb, `window.__got.filter(m => m.seq > 0).map(m => m.seq)`)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seqs %v: a gap or a duplicate", seqs)
		}
	}
}

// TestProtoCodecUpToDate: the client's generated codec names the schema it
// was generated from; after a schema change, run scripts/vendor-web.sh.
func TestProtoCodecUpToDate(t *testing.T) {
	schema, err := os.ReadFile("../proto/roomcast/v1/roomcast.proto")
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile("client/roomcast.pb.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(schema)
	m := regexp.MustCompile(`roomcast\.proto sha256:([0-9a-f]{64})`).FindSubmatch(js)
	if m == nil || string(m[1]) != hex.EncodeToString(sum[:]) {
		t.Fatal("web/client/roomcast.pb.js was generated from another roomcast.proto: run scripts/vendor-web.sh (make vendor-web)")
	}
}
