package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// TestHotRoomPlacement is issue 14's R14 acceptance on the machine's Redis
// and PostgreSQL: node A advertises itself, node B does not (it carries no
// placed room). A room crossing --hot-room is placed on A: the route API
// on B answers nodes [A], and a client that connects to B anyway is served
// and told "move": A in its first batch (WebSocket) or first poll answer.
// A cold room stays where its viewers are. When A goes away, B keeps
// serving the room on the stale table, and the table drops A.
func TestHotRoomPlacement(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	db := redistest.Postgres(t)
	cluster := func(cfg *config.Config) {
		cfg.Redis, cfg.RedisPrefix, cfg.DB, cfg.HotRoom, cfg.RenderBudget = "redis://"+redistest.RedisAddr+"/0", prefix, db, 2, 0
	}
	port := redistest.FreePort(t)
	aURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	a := startServer(t, func(cfg *config.Config) {
		cluster(cfg)
		cfg.HTTP, cfg.Advertise = fmt.Sprintf("127.0.0.1:%d", port), aURL
	})
	b := startServer(t, cluster)
	anchor := a.createRoom("final")
	a.createRoom("cozy")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	route := func(s *server, room string) (nodes []string, ws, poll string) {
		var r struct {
			Nodes   []string `json:"nodes"`
			WSURL   string   `json:"ws_url"`
			PollURL string   `json:"poll_url"`
		}
		if code := s.do("GET", "/api/route?room="+room+"&uid=u1", "", nil, &r); code != 200 {
			t.Fatalf("route: %d", code)
		}
		return r.Nodes, r.WSURL, r.PollURL
	}
	if nodes, _, _ := route(b, "final"); !slices.Equal(nodes, []string{b.url}) {
		t.Fatalf("a cold room's nodes on B: %v, want B itself (%s)", nodes, b.url)
	}
	// Two viewers on A make the room hot (--hot-room 2).
	for i := 0; i < 2; i++ {
		w, _, err := a.dial(ctx, "room=final")
		if err != nil {
			t.Fatal(err)
		}
		defer w.close()
	}
	testutil.WaitFor(t, "B's route service to send the hot room's clients to A", 30*time.Second, func() bool {
		nodes, _, _ := route(b, "final")
		return slices.Equal(nodes, []string{aURL})
	})
	if _, ws, poll := route(b, "final"); ws != "ws://127.0.0.1"+aURL[len("http://127.0.0.1"):]+"/ws?room=final" || poll != aURL+"/api/rooms/final/messages" {
		t.Fatalf("route URLs should point at A: ws %s, poll %s", ws, poll)
	}
	if nodes, _, _ := route(b, "cozy"); !slices.Equal(nodes, []string{b.url}) {
		t.Fatalf("a cold room stays where its viewers are: %v", nodes)
	}

	// A client connected to B anyway is served, and told to move.
	w, _, err := b.dial(ctx, "room=final")
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	_, first, err := w.conn.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var batch struct {
		Type, Move string
	}
	if err := json.Unmarshal(first, &batch); err != nil || batch.Type != "batch" || batch.Move != aURL {
		t.Fatalf("first frame on B: %s; want a batch with move %q", first, aURL)
	}
	if code, _ := a.send("final", anchor, map[string]string{"kind": "chat", "text": "still served"}); code != 201 {
		t.Fatalf("send: %d", code)
	}
	for {
		f, err := w.next(ctx, "batch")
		if err != nil {
			t.Fatalf("B no longer serves the room: %v", err)
		}
		if len(f.Messages) > 0 && f.Messages[0].Text == "still served" {
			break
		}
	}
	firstPoll := func(s *server) (int, string) {
		var p struct{ Move string }
		return s.do("GET", "/api/rooms/final/messages?limit=15", "", nil, &p), p.Move
	}
	if code, mv := firstPoll(b); code != 200 || mv != aURL {
		t.Fatalf("first poll on B: %d move %q, want 200 and %q", code, mv, aURL)
	}
	if code, mv := firstPoll(a); code != 200 || mv != "" {
		t.Fatalf("first poll on A (a placed node): %d move %q, want none", code, mv)
	}

	// A leaves. B keeps serving on the stale table, then the table drops A.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := a.app.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := firstPoll(b); code != 200 {
		t.Fatalf("a stale table made the room unreachable on B: %d", code)
	}
	testutil.WaitFor(t, "the table to drop the node that left", 30*time.Second, func() bool {
		nodes, _, _ := route(b, "final")
		return slices.Equal(nodes, []string{b.url})
	})
}
