package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomcast/internal/auth"
)

// TestBadInputs: each bad request gets its status and error code, and no
// message accepted before, between or after them is lost.
func TestBadInputs(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("bad")
	good := s.token("good", auth.RoleViewer, 5)
	expiredSigner := s.signer
	expired, err := expiredSigner.Sign(auth.Claims{Sub: "old", Role: auth.RoleViewer}, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var accepted []uint64
	sendGood := func() {
		code, a := s.send("bad", good, map[string]string{"kind": "chat", "text": "ok"})
		if code != 201 {
			t.Fatalf("good send: %d %+v", code, a)
		}
		accepted = append(accepted, a.Seq)
	}
	cases := []struct {
		name   string
		room   string
		tok    string
		body   any
		status int
		code   string
	}{
		{"bad JSON", "bad", good, `{"kind":"chat",`, 400, "bad_json"},
		{"not an object", "bad", good, `[1,2]`, 400, "bad_json"},
		{"oversize text", "bad", good, map[string]string{"kind": "chat", "text": strings.Repeat("字", 201)}, 400, "text_too_long"},
		{"invalid UTF-8", "bad", good, []byte("{\"kind\":\"chat\",\"text\":\"\xff\xfe\"}"), 400, "invalid_utf8"},
		{"empty text", "bad", good, map[string]string{"kind": "chat", "text": "   "}, 400, "empty_text"},
		{"unknown kind", "bad", good, map[string]string{"kind": "shout", "text": "x"}, 400, "unknown_kind"},
		{"missing kind", "bad", good, map[string]string{"text": "x"}, 400, "unknown_kind"},
		{"server-only kind", "bad", good, map[string]string{"kind": "system", "text": "x"}, 403, "forbidden_kind"},
		{"unknown gift", "bad", good, map[string]any{"kind": "gift", "gift": map[string]any{"id": "yacht", "count": 1}}, 400, "unknown_gift"},
		{"bad gift count", "bad", good, map[string]any{"kind": "gift", "gift": map[string]any{"id": "rose", "count": -3}}, 400, "bad_count"},
		{"missing token", "bad", "", map[string]string{"kind": "chat", "text": "x"}, 401, "unauthorized"},
		{"bad token", "bad", "not.a.jwt", map[string]string{"kind": "chat", "text": "x"}, 401, "bad_token"},
		{"forged token", "bad", forge(t), map[string]string{"kind": "chat", "text": "x"}, 401, "bad_token"},
		{"expired token", "bad", expired, map[string]string{"kind": "chat", "text": "x"}, 401, "token_expired"},
		{"unknown room", "nope", good, map[string]string{"kind": "chat", "text": "x"}, 404, "room_not_found"},
		{"oversize body", "bad", good, `{"kind":"chat","text":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "too_large"},
	}
	sendGood()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, a := s.send(tc.room, tc.tok, tc.body)
			if code != tc.status || a.Error == nil || a.Error.Code != tc.code || a.Error.Message == "" {
				t.Fatalf("want %d %s, got %d %+v", tc.status, tc.code, code, a.Error)
			}
		})
		sendGood()
	}
	// Bad poll parameters.
	var e sendAnswer
	if code := s.do("GET", "/api/rooms/bad/messages?cursor=-1", "", nil, &e); code != 400 || e.Error.Code != "bad_request" {
		t.Fatalf("bad cursor: %d %+v", code, e.Error)
	}
	if code := s.do("GET", "/api/rooms/nope/messages", "", nil, &e); code != 404 || e.Error.Code != "room_not_found" {
		t.Fatalf("unknown room poll: %d %+v", code, e.Error)
	}
	if code := s.do("GET", "/api/admin/route", good, nil, &e); code != 401 || e.Error.Code != "unauthorized" {
		t.Fatalf("admin without key: %d %+v", code, e.Error)
	}

	// WebSocket: bad frames get error frames; an oversize frame closes 1009.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := s.dial(ctx, "room=bad&token="+good)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for _, bad := range []struct {
		frame string
		code  string
	}{
		{`{"type":"send","id":"a","kind":"chat"`, "bad_json"},
		{`{"type":"dance","id":"b"}`, "bad_request"},
		{`{"type":"send","id":"c","kind":"nope","text":"x"}`, "unknown_kind"},
		{`{"type":"send","id":"d","kind":"gift","gift":{"id":"yacht"}}`, "unknown_gift"},
	} {
		if err := c.conn.Write(ctx, websocket.MessageText, []byte(bad.frame)); err != nil {
			t.Fatal(err)
		}
		f, err := c.next(ctx, "error")
		if err != nil || f.Error == nil || f.Error.Code != bad.code {
			t.Fatalf("frame %s: want error %s, got %+v %v", bad.frame, bad.code, f, err)
		}
	}
	if _, resp, err := s.dial(ctx, "room=nope"); err == nil || resp.StatusCode != 404 {
		t.Fatalf("ws to unknown room: %v", err)
	}
	if _, resp, err := s.dial(ctx, "room=bad&token=garbage"); err == nil || resp.StatusCode != 401 {
		t.Fatalf("ws with bad token: %v", err)
	}
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(`{"type":"send","text":"`+strings.Repeat("x", 64<<10)+`"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := c.read(ctx); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
				t.Fatalf("oversize frame: want close 1009, got %v", err)
			}
			break
		}
	}
	sendGood()
	// Nothing accepted was lost.
	var cursor uint64
	have := map[uint64]bool{}
	for {
		p := s.poll("bad", &cursor, 100)
		for _, m := range p.Messages {
			have[m.Seq] = true
		}
		if len(p.Messages) == 0 {
			break
		}
		cursor = p.Cursor
	}
	for _, seq := range accepted {
		if !have[seq] {
			t.Errorf("accepted message %d lost", seq)
		}
	}
}

// forge signs a token with the wrong secret.
func forge(t *testing.T) string {
	other, err := auth.NewSigner("some-other-secret")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := other.Sign(auth.Claims{Sub: "mallory", Role: auth.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
