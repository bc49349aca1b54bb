package app

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/testutil"
)

// TestBudgetPriority: over the render budget, gifts and high-level users win
// and must-deliver messages are never dropped (R5, R6), on the WebSocket and
// in polls.
func TestBudgetPriority(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RenderBudget = 5; c.Tick = time.Second })
	s.createRoom("b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := s.dial(ctx, "room=b")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	first, err := c.next(ctx, "batch")
	if err != nil {
		t.Fatal(err)
	}
	start := first.Cursor
	low := s.token("low", auth.RoleViewer, 0)
	high := s.token("high", auth.RoleViewer, 90)
	gifter := s.token("gifter", auth.RoleViewer, 0)
	for i := 0; i < 30; i++ {
		s.send("b", low, map[string]string{"kind": "chat", "text": fmt.Sprint("low", i)})
	}
	for i := 0; i < 3; i++ {
		s.send("b", high, map[string]string{"kind": "chat", "text": fmt.Sprint("high", i)})
		s.send("b", gifter, map[string]any{"kind": "gift", "gift": map[string]any{"id": "rocket", "count": 1}})
	}
	for i := 0; i < 3; i++ {
		if code, a := s.send("b", testAdminKey, map[string]string{"kind": "system", "text": fmt.Sprint("sys", i)}); code != 201 {
			t.Fatalf("system send: %d %+v", code, a)
		}
	}
	var got []msg
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		rctx, rcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		f, err := c.next(rctx, "batch")
		rcancel()
		if err != nil {
			break
		}
		got = append(got, f.Messages...)
	}
	systems, droppable := 0, 0
	for _, m := range got {
		switch {
		case m.Kind == "system":
			systems++
		case m.Kind == "enter" || m.Kind == "leave":
		default:
			droppable++
			if m.Kind == "chat" && m.User != nil && m.User.ID == "low" {
				t.Errorf("a low-level chat beat gifts and high-level chats: %+v", m)
			}
		}
	}
	if systems != 3 {
		t.Errorf("must-deliver: got %d of 3", systems)
	}
	if droppable == 0 || droppable > 6 {
		t.Errorf("budget 5/s over ~1s should deliver a handful of droppable messages, got %d", droppable)
	}
	// Polling over budget: must-deliver first, then by priority.
	p := s.poll("b", &start, 9) // 3 system + 3 gifts + 3 high-level chats
	kinds := map[string]int{}
	for _, m := range p.Messages {
		kinds[m.Kind]++
		if m.User != nil && m.User.ID == "low" {
			t.Errorf("poll chose a low-level chat over better ones: %+v", m)
		}
	}
	if kinds["system"] != 3 || kinds["gift"] != 3 || len(p.Messages) != 9 {
		t.Errorf("poll selection: %v (%d messages)", kinds, len(p.Messages))
	}
	if len(got) > 0 && p.Cursor < got[len(got)-1].Seq {
		t.Errorf("poll cursor %d must pass everything considered", p.Cursor)
	}
}

// TestUserScopeAndBroadcast: a user-scoped message reaches only its target
// (every connection of it); a broadcast reaches every room.
func TestUserScopeAndBroadcast(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Tick = 20 * time.Millisecond })
	anchor := s.createRoom("one")
	s.createRoom("two")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := s.token("alice", auth.RoleViewer, 1)
	bob := s.token("bob", auth.RoleViewer, 1)
	a1, _, err := s.dial(ctx, "room=one&token="+alice)
	if err != nil {
		t.Fatal(err)
	}
	defer a1.close()
	a2, _, err := s.dial(ctx, "room=two&token="+alice) // alice's second connection, another room
	if err != nil {
		t.Fatal(err)
	}
	defer a2.close()
	b1, _, err := s.dial(ctx, "room=one&token="+bob)
	if err != nil {
		t.Fatal(err)
	}
	defer b1.close()
	// A connection is attached once its first batch arrives.
	for _, c := range []*wsClient{a1, a2, b1} {
		if _, err := c.next(ctx, "batch"); err != nil {
			t.Fatal(err)
		}
	}
	code, ans := s.send("one", anchor, map[string]string{"kind": "notice", "scope": "user", "to": "alice", "text": "for alice"})
	if code != 201 {
		t.Fatalf("user send: %d %+v", code, ans)
	}
	for _, c := range []*wsClient{a1, a2} {
		if !waitText(ctx, c, "for alice") {
			t.Fatal("alice's connection did not get her message")
		}
	}
	// Bob must not: send a room marker after it and check bob sees the
	// marker without the private message.
	s.send("one", anchor, map[string]string{"kind": "notice", "text": "marker"})
	for {
		f, err := b1.next(ctx, "batch")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, m := range f.Messages {
			if m.Text == "for alice" {
				t.Fatal("bob received alice's message")
			}
			found = found || m.Text == "marker"
		}
		if found {
			break
		}
	}
	// A poller with alice's token gets her message too (seq 0, after the
	// room's), once: the answer's user_cursor moves past it. Bob's does not.
	var ap struct {
		Messages   []msg `json:"messages"`
		UserCursor int64 `json:"user_cursor"`
	}
	s.do("GET", "/api/rooms/one/messages?token="+alice, "", nil, &ap)
	got := 0
	for _, m := range ap.Messages {
		if m.Text == "for alice" && m.Seq == 0 && m.Scope == "user" {
			got++
		}
	}
	if got != 1 || ap.UserCursor == 0 {
		t.Fatalf("alice's poll: %+v", ap)
	}
	s.do("GET", fmt.Sprintf("/api/rooms/one/messages?token=%s&user_cursor=%d", alice, ap.UserCursor), "", nil, &ap)
	for _, m := range ap.Messages {
		if m.Text == "for alice" {
			t.Fatal("user_cursor did not move past alice's message")
		}
	}
	s.do("GET", "/api/rooms/one/messages?token="+bob, "", nil, &ap)
	for _, m := range ap.Messages {
		if m.Text == "for alice" {
			t.Fatal("bob's poll returned alice's message")
		}
	}
	// Viewers may not send user-scoped or broadcast messages.
	if code, _ := s.send("one", bob, map[string]string{"kind": "chat", "scope": "broadcast", "text": "x"}); code != 403 {
		t.Fatalf("viewer broadcast: %d", code)
	}
	var br map[string]any
	if code := s.do("POST", "/api/broadcast", testAdminKey, map[string]string{"kind": "system", "text": "to everyone"}, &br); code != 201 {
		t.Fatalf("broadcast: %d %v", code, br)
	}
	for _, c := range []*wsClient{a1, a2, b1} {
		if !waitText(ctx, c, "to everyone") {
			t.Fatal("broadcast missed a room")
		}
	}
	p := s.poll("two", nil, 100)
	found := false
	for _, m := range p.Messages {
		found = found || (m.Text == "to everyone" && m.Scope == "broadcast")
	}
	if !found {
		t.Fatalf("broadcast not in room two's timeline: %+v", p)
	}
}

func waitText(ctx context.Context, c *wsClient, text string) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a bound for a loaded machine, not a speed check
	defer cancel()
	for {
		f, err := c.next(ctx, "batch")
		if err != nil {
			return false
		}
		for _, m := range f.Messages {
			if m.Text == text {
				return true
			}
		}
	}
}

// TestRateLimitAndKick: over the per-user rate, 429 with retry_after_ms; a
// kicked user's connection closes and cannot come back or send.
func TestRateLimitAndKick(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RateLimit = "3/10s" })
	anchor := s.createRoom("m")
	tok := s.token("chatty", auth.RoleViewer, 1)
	for i := 0; i < 3; i++ {
		if code, a := s.send("m", tok, map[string]string{"kind": "chat", "text": "hi"}); code != 201 {
			t.Fatalf("send %d: %d %+v", i, code, a)
		}
	}
	code, a := s.send("m", tok, map[string]string{"kind": "chat", "text": "too much"})
	if code != 429 || a.Error == nil || a.Error.Code != "rate_limited" || a.RetryAfterMS <= 0 {
		t.Fatalf("want 429 rate_limited with retry_after_ms, got %d %+v", code, a)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	victim := s.token("victim", auth.RoleViewer, 1)
	c, _, err := s.dial(ctx, "room=m&token="+victim)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.next(ctx, "batch"); err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if code := s.do("POST", "/api/rooms/m/kick", tok, map[string]any{"user": "victim"}, &out); code != 403 {
		t.Fatalf("a viewer may not kick: %d", code)
	}
	if code := s.do("POST", "/api/rooms/m/kick", anchor, map[string]any{"user": "victim", "duration_s": 60}, &out); code != 200 {
		t.Fatalf("kick: %d %v", code, out)
	}
	for {
		_, err := c.read(ctx)
		if err != nil {
			if !strings.Contains(err.Error(), "4003") {
				t.Fatalf("want close 4003 kicked, got %v", err)
			}
			break
		}
	}
	if _, resp, err := s.dial(ctx, "room=m&token="+victim); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("kicked user re-entered: %v %v", resp, err)
	}
	if code, a := s.send("m", victim, map[string]string{"kind": "chat", "text": "back"}); code != 403 || a.Error.Code != "kicked" {
		t.Fatalf("kicked user sent: %d %+v", code, a)
	}
	// Mute: the muted user cannot send; others can.
	if code := s.do("POST", "/api/rooms/m/mute", anchor, map[string]any{"user": "chatty2"}, &out); code != 200 {
		t.Fatalf("mute: %d", code)
	}
	if code, a := s.send("m", s.token("chatty2", auth.RoleViewer, 1), map[string]string{"kind": "chat", "text": "x"}); code != 403 || a.Error.Code != "muted" {
		t.Fatalf("muted user sent: %d %+v", code, a)
	}
	// Retract: a must-deliver retract referencing the message.
	_, sent := s.send("m", anchor, map[string]string{"kind": "chat", "text": "oops"})
	if code := s.do("DELETE", "/api/rooms/m/messages/"+sent.ID, anchor, nil, &out); code != 200 {
		t.Fatalf("retract: %d %v", code, out)
	}
	p := s.poll("m", nil, 100)
	found := false
	for _, m := range p.Messages {
		found = found || (m.Kind == "retract" && m.Ref == sent.ID)
	}
	if !found {
		t.Fatalf("no retract in %+v", p.Messages)
	}
}

// TestSlowReaderDropped: a client that stops reading is dropped with 4008
// while the others keep receiving everything.
func TestSlowReaderDropped(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.RenderBudget = 0
		c.Tick = 10 * time.Millisecond
		c.QueueBytes = 64 << 10
		c.SendBuffer = 16 << 10 // so the kernel does not absorb the whole flood
	})
	s.createRoom("slow")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The slow reader: a raw socket that upgrades and never reads again,
	// with a tiny receive buffer.
	raw, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(raw, "GET /ws?room=slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	fast, _, err := s.dial(ctx, "room=slow&cursor=0")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.close()
	tok := s.token("flood", auth.RoleViewer, 1)
	text := strings.Repeat("x", 190)
	const n = 1500
	// The fast reader reads while the flood goes on.
	chk := &seqChecker{name: "fast"}
	var lastSent atomic.Uint64
	readDone := make(chan error, 1)
	go func() {
		for {
			f, err := fast.next(ctx, "batch")
			if err != nil {
				readDone <- err
				return
			}
			for _, m := range f.Messages {
				chk.see(m.Seq)
			}
			if chk.err != nil || (lastSent.Load() > 0 && chk.last >= lastSent.Load()) {
				readDone <- chk.err
				return
			}
		}
	}()
	var last uint64
	for i := 0; i < n; i++ {
		_, a := s.send("slow", tok, map[string]string{"kind": "chat", "text": text})
		last = a.Seq
	}
	lastSent.Store(last)
	s.send("slow", tok, map[string]string{"kind": "chat", "text": "end"}) // wakes the reader's last check
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the slow reader to be dropped", 10*time.Second, func() bool { return s.app.ws.Stats().ClosedSlow > 0 })
}
