package fanout

import (
	"context"
	"fmt"
	"testing"

	"roomcast/internal/presence"
)

// TestTakePresence: the node collects each room's arrivals (the first few by
// name) and departures, and TakePresence hands them over once.
func TestTakePresence(t *testing.T) {
	r := newRig(t, Config{})
	ctx := context.Background()
	var conns []*Conn
	for i := range 5 {
		id := fmt.Sprint("u", i)
		c := &Conn{Sink: &countSink{}, Room: "p", Session: id, Member: presence.Member{Session: id, UserID: id, Name: id}}
		if err := r.node.Attach(ctx, c, 0, false); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	anon := &Conn{Sink: &countSink{}, Room: "q", Session: "a", Member: presence.Member{Session: "a"}}
	if err := r.node.Attach(ctx, anon, 0, false); err != nil {
		t.Fatal(err)
	}
	r.node.Detach(conns[0])
	r.node.Detach(conns[1])

	got := map[string]presence.Summary{}
	for _, s := range r.node.TakePresence() {
		got[s.Room] = s
	}
	p := got["p"]
	if p.Joined != 5 || p.Left != 2 || len(p.Named) != presenceNames || p.Named[0].UserID != "u0" {
		t.Fatalf("room p: %+v", p)
	}
	if q := got["q"]; q.Joined != 1 || q.Left != 0 || len(q.Named) != 0 {
		t.Fatalf("room q (anonymous viewer, announced by count only): %+v", q)
	}
	if again := r.node.TakePresence(); len(again) != 0 {
		t.Fatalf("second take: %+v, want nothing", again)
	}
}
