package fanout

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/ws"
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

// payloadSink keeps every payload it is sent.
type payloadSink struct {
	mu sync.Mutex
	ps []*Payload
}

func (s *payloadSink) Send(p *Payload) error {
	s.mu.Lock()
	s.ps = append(s.ps, p)
	s.mu.Unlock()
	return nil
}
func (s *payloadSink) Close(int, string) {}

func (s *payloadSink) take() []*Payload {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.ps
	s.ps = nil
	return ps
}

// TestCountsRideWithBatch: a changed online count is not a write of its own
// (one more write per viewer a second): it goes out with the room's next
// batch, as its own WebSocket message ahead of it in the same frame; in a
// room that sent no batch for a second it goes alone (the newest only), and
// queueing it never makes the hub dirty.
func TestCountsRideWithBatch(t *testing.T) {
	r := newRig(t, Config{Tick: time.Hour})
	ctx := context.Background()
	sink := &payloadSink{}
	c := &Conn{Sink: sink, Room: "c", Session: "s", Member: presence.Member{Session: "s"}}
	if err := r.node.Attach(ctx, c, 0, false); err != nil {
		t.Fatal(err)
	}
	r.append(t, "c", message.KindChat, 100)
	r.node.tick(time.Now(), false, false)
	sink.take() // the first batch, the counts at join, one live batch
	if _, err := r.pres.Join(ctx, "c", presence.Member{Session: "other"}); err != nil {
		t.Fatal(err)
	}
	r.node.second(time.Now()) // a batch went out this second: the count waits for the next
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("second() sent %d payloads itself", len(got))
	}
	r.node.dirtyMu.Lock()
	dirty := len(r.node.dirty)
	r.node.dirtyMu.Unlock()
	if dirty != 0 {
		t.Fatalf("a queued count made %d hubs dirty", dirty)
	}
	r.append(t, "c", message.KindChat, 100)
	r.node.tick(time.Now(), false, false)
	got := sink.take()
	if len(got) != 1 || got[0].count != "" || len(got[0].before) != 1 || got[0].before[0].count != "online" {
		t.Fatalf("tick sent %d payloads, want one batch carrying the count: %+v", len(got), got)
	}
	want := ws.NewPreparedBatch([][]byte{got[0].before[0].Bytes(JSON), got[0].Bytes(JSON)}, true)
	if f := got[0].Frame(JSON); f.Len() != want.Len() || !strings.Contains(string(got[0].before[0].Bytes(JSON)), `"count":2`) {
		t.Fatalf("frame of %d bytes, want %d (count + batch)", f.Len(), want.Len())
	}

	// A quiet room: the count goes alone at the first second without a batch.
	r.node.second(time.Now()) // ends the second that had a batch
	for _, s := range []string{"o2", "o3"} {
		if _, err := r.pres.Join(ctx, "c", presence.Member{Session: s}); err != nil {
			t.Fatal(err)
		}
	}
	r.node.second(time.Now())
	got = sink.take()
	if len(got) != 1 || got[0].count != "online" || len(got[0].before) != 0 || !strings.Contains(string(got[0].Bytes(JSON)), `"count":4`) {
		t.Fatalf("second() sent %+v, want the latest online count alone", got)
	}
}
