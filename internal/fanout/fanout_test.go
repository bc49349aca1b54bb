package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/bus"
	"roomcast/internal/likes"
	"roomcast/internal/message"
	"roomcast/internal/metrics"
	"roomcast/internal/presence"
	"roomcast/internal/timeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countSink counts what it receives; fn (optional) sees each payload.
type countSink struct {
	n      atomic.Int64
	mu     sync.Mutex
	frames [][]byte
	keep   bool
}

func (s *countSink) Send(p *Payload) error {
	s.n.Add(1)
	if s.keep {
		s.mu.Lock()
		s.frames = append(s.frames, p.Bytes(JSON))
		s.mu.Unlock()
	}
	return nil
}
func (s *countSink) Close(int, string) {}

// busNotify publishes each appended message on b, as the Redis timeline's
// pub/sub does.
func busNotify(b *bus.Memory) timeline.Notify {
	return func(m *message.Message) {
		_ = b.Publish(context.Background(), bus.RoomTopic(m.Room), bus.Event{Type: bus.EvMessage, Room: m.Room, Msg: m})
	}
}

// manualNode is a node on tl and b whose ticks the test runs by hand.
func manualNode(t *testing.T, tl timeline.Timeline, b *bus.Memory) *Node {
	t.Helper()
	pres := presence.NewMemory(time.Minute)
	n, err := New(Config{Tick: time.Hour, BigRoom: -1}, Deps{Timeline: tl, Bus: b, Presence: pres, Likes: likes.NewMemory(), Metrics: metrics.New()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(); pres.Close() })
	return n
}

type rig struct {
	tl   *timeline.Memory
	bus  *bus.Memory
	node *Node
	pres *presence.Memory
}

func newRig(t testing.TB, cfg Config) *rig {
	r := &rig{bus: bus.NewMemory(), pres: presence.NewMemory(time.Minute)}
	r.tl = timeline.NewMemory(timeline.Retention{}, busNotify(r.bus))
	if cfg.BigRoom == 0 {
		cfg.BigRoom = -1 // most tests tick by hand and want every tick to deliver
	}
	n, err := New(cfg, Deps{Timeline: r.tl, Bus: r.bus, Presence: r.pres, Likes: likes.NewMemory(), Metrics: metrics.New()})
	if err != nil {
		t.Fatal(err)
	}
	r.node = n
	t.Cleanup(func() { n.Close(); r.pres.Close() })
	return r
}

func (r *rig) append(t testing.TB, room string, kind message.Kind, prio int) *message.Message {
	m := &message.Message{ID: "x", Room: room, Kind: kind, Scope: message.ScopeRoom, Text: "hello", Priority: prio}
	if _, err := r.tl.Append(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSelectTopKeepsMustDeliver(t *testing.T) {
	var msgs []*message.Message
	for i := 1; i <= 10; i++ {
		k := message.KindChat
		if i%4 == 0 {
			k = message.KindSystem
		}
		msgs = append(msgs, &message.Message{Seq: uint64(i), Kind: k, Priority: i})
	}
	kept, dropped := SelectTop(msgs, 2)
	if dropped != 6 || len(kept) != 4 {
		t.Fatalf("kept %d dropped %d", len(kept), dropped)
	}
	want := []uint64{4, 8, 9, 10}
	for i, m := range kept {
		if m.Seq != want[i] {
			t.Fatalf("kept %v, want seqs %v", kept, want)
		}
	}
	// A negative budget (a refill clock seen going backwards) keeps the
	// must-deliver messages and drops the rest; it used to panic.
	kept, dropped = SelectTop(msgs, -45)
	if dropped != 8 || len(kept) != 2 || kept[0].Seq != 4 || kept[1].Seq != 8 {
		t.Fatalf("negative budget: kept %v dropped %d", kept, dropped)
	}
	// Poll selection with more must-deliver than the limit keeps the
	// cursor before the first one left out.
	sel, cur := SelectForPoll(msgs, 1)
	if len(sel) != 1 || sel[0].Seq != 4 || cur != 4 {
		t.Fatalf("poll selection %v cursor %d", sel, cur)
	}
}

func TestTickDeliversOnceEncoded(t *testing.T) {
	r := newRig(t, Config{Tick: 10 * time.Millisecond})
	ctx := context.Background()
	sinks := make([]*countSink, 5)
	for i := range sinks {
		sinks[i] = &countSink{keep: true}
		c := &Conn{Sink: sinks[i], Room: "a", Session: fmt.Sprint(i), Member: presence.Member{Session: fmt.Sprint(i)}}
		if err := r.node.Attach(ctx, c, 0, true); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		r.append(t, "a", message.KindChat, 100)
	}
	deadline := time.Now().Add(5 * time.Second)
	// Each sink gets: first batch, online, likes, then the live batch.
	for sinks[4].n.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var first []byte
	for i, s := range sinks {
		s.mu.Lock()
		if len(s.frames) < 4 {
			t.Fatalf("sink %d got %d frames", i, len(s.frames))
		}
		b := s.frames[3]
		s.mu.Unlock()
		if i == 0 {
			first = b
		} else if &b[0] != &first[0] {
			t.Fatal("connections received different encodings of one batch")
		}
	}
}

// BenchmarkAppend measures the timeline append (seq + store + notify).
func BenchmarkAppend(b *testing.B) {
	tl := timeline.NewMemory(timeline.Retention{}, nil)
	ctx := context.Background()
	u := &message.User{ID: "u", Name: "n", Level: 3}
	b.ReportAllocs()
	for b.Loop() {
		m := &message.Message{ID: "id", Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom, User: u, Text: "hello world", Priority: 109}
		if _, err := tl.Append(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTickFanout measures one tick for one room of 10,000 connections
// with 2 new messages: select, encode once, hand the payload to every sink.
func BenchmarkTickFanout(b *testing.B) {
	r := newRig(b, Config{Tick: time.Hour})
	ctx := context.Background()
	const conns = 10000
	for i := 0; i < conns; i++ {
		c := &Conn{Sink: &countSink{}, Room: "big", Session: fmt.Sprint(i), Member: presence.Member{Session: fmt.Sprint(i)}}
		if err := r.node.Attach(ctx, c, 0, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.append(b, "big", message.KindChat, 100)
		r.append(b, "big", message.KindGift, 600)
		r.node.tick(time.Now(), false, false)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conns*2), "ns/delivery")
}

// BenchmarkPoll measures a poll answer of a hot room from the window.
func BenchmarkPoll(b *testing.B) {
	r := newRig(b, Config{Tick: time.Hour, Budget: 20})
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		r.append(b, "hot", message.KindChat, 100+i%50)
	}
	q := PollQuery{Cursor: 185, HasCursor: true, Limit: 15}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.node.Poll(ctx, "hot", q); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFanoutPathAllocs guards that handing a batch to connections does not
// allocate per connection.
func TestFanoutPathAllocs(t *testing.T) {
	r := newRig(t, Config{Tick: time.Hour})
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		c := &Conn{Sink: &countSink{}, Room: "big", Session: fmt.Sprint(i), Member: presence.Member{Session: fmt.Sprint(i)}}
		if err := r.node.Attach(ctx, c, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	r.node.tick(time.Now(), false, false) // build the snapshot
	allocs := testing.AllocsPerRun(20, func() {
		r.append(t, "big", message.KindChat, 100)
		r.node.tick(time.Now(), false, false)
	})
	if allocs > 40 { // per tick, independent of the 1,000 connections
		t.Fatalf("%.0f allocations per tick for 1,000 connections", allocs)
	}
}

// TestBigRoomMergeWindow: a small room is dispatched at every tick; a room
// with BigRoom viewers once BigTick has passed since its first pending
// message arrived (and not at a big-only tick before that), so each write
// carries more messages; tick reports the big room's deadline meanwhile.
func TestBigRoomMergeWindow(t *testing.T) {
	r := newRig(t, Config{Tick: time.Hour, BigRoom: 2, BigTick: 3 * time.Hour})
	ctx := context.Background()
	big := []*countSink{{}, {}}
	for i, s := range big {
		if err := r.node.Attach(ctx, &Conn{Sink: s, Room: "big", Session: fmt.Sprint(i), Member: presence.Member{Session: fmt.Sprint(i)}}, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	small := &countSink{}
	if err := r.node.Attach(ctx, &Conn{Sink: small, Room: "small", Session: "s", Member: presence.Member{Session: "s"}}, 0, false); err != nil {
		t.Fatal(err)
	}
	base, smallBase := big[0].n.Load(), small.n.Load()
	// Messages arrive now (the node's clock); ticks are given later times.
	t0 := time.Now()
	for i, at := range []time.Duration{time.Hour, 2 * time.Hour, 3*time.Hour + time.Minute} {
		i++
		r.append(t, "big", message.KindChat, 100)
		r.append(t, "small", message.KindChat, 100)
		next := r.node.tick(t0.Add(at), false, false)
		got := big[0].n.Load() - base
		if want := int64(i / 3); got != want {
			t.Fatalf("after tick %d the big room sent %d batches, want %d", i, got, want)
		}
		if got := small.n.Load() - smallBase; got != int64(i) {
			t.Fatalf("after tick %d the small room sent %d batches", i, got)
		}
		if i < 3 && (next.Before(t0.Add(3*time.Hour)) || next.After(time.Now().Add(3*time.Hour))) {
			t.Fatalf("tick %d: next deadline %v, want 3h after the first pending message", i, next.Sub(t0))
		}
	}
	// The next message opens a new merge window: a big-only tick before its
	// deadline sends nothing (nor does it dispatch the small room), one after does.
	r.append(t, "big", message.KindChat, 100)
	r.append(t, "small", message.KindChat, 100)
	if next := r.node.tick(t0.Add(2*time.Hour), false, true); next.IsZero() {
		t.Fatal("no deadline for the waiting big room")
	}
	if got := big[0].n.Load() - base; got != 1 {
		t.Fatalf("big-only tick before the deadline: %d batches", got)
	}
	if got := small.n.Load() - smallBase; got != 3 {
		t.Fatalf("a big-only tick dispatched the small room (%d batches)", got)
	}
	if next := r.node.tick(t0.Add(3*time.Hour+time.Minute), false, true); !next.IsZero() {
		t.Fatalf("deadline %v left after the big room was due", next)
	}
	if got := big[0].n.Load() - base; got != 2 {
		t.Fatalf("big-only tick after the deadline: %d batches, want 2", got)
	}
}

// seqs extracts the seqs of the batch frames a sink received.
func (s *countSink) seqs(t *testing.T) []uint64 {
	var out []uint64
	for _, m := range s.received(t) {
		out = append(out, m.Seq)
	}
	return out
}

// texts lists the texts of the messages the sink received, in order.
func (s *countSink) texts(t *testing.T) []string {
	var out []string
	for _, m := range s.received(t) {
		out = append(out, m.Text)
	}
	return out
}

// received decodes the messages of every frame the sink kept, in order.
func (s *countSink) received(t *testing.T) []message.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []message.Message
	for _, f := range s.frames {
		var b struct {
			Messages []message.Message `json:"messages"`
		}
		if err := json.Unmarshal(f, &b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Messages...)
	}
	return out
}

// TestAttachAheadOfDispatch: a client resuming with a cursor the hub has
// not dispatched yet (it saw those messages on another node) waits for the
// hub and then continues with no duplicate and no gap.
func TestAttachAheadOfDispatch(t *testing.T) {
	r := newRig(t, Config{Tick: time.Hour})
	ctx := context.Background()
	other := &countSink{keep: true}
	if err := r.node.Attach(ctx, &Conn{Sink: other, Room: "f", Session: "o", Member: presence.Member{Session: "o"}}, 0, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r.append(t, "f", message.KindChat, 100)
	}
	r.node.tick(time.Now(), false, false)
	r.append(t, "f", message.KindChat, 100) // 4 and 5: stored, not yet dispatched here
	r.append(t, "f", message.KindChat, 100)
	at5, at4 := &countSink{keep: true}, &countSink{keep: true}
	for _, x := range []struct {
		s   *countSink
		cur uint64
	}{{at5, 5}, {at4, 4}} {
		if err := r.node.Attach(ctx, &Conn{Sink: x.s, Room: "f", Session: fmt.Sprint(x.cur), Member: presence.Member{Session: fmt.Sprint(x.cur)}}, x.cur, true); err != nil {
			t.Fatal(err)
		}
	}
	if at5.n.Load() != 0 {
		t.Fatal("a client ahead of the hub must wait")
	}
	r.node.tick(time.Now(), false, false)
	r.append(t, "f", message.KindChat, 100)
	r.node.tick(time.Now(), false, false)
	if got := fmt.Sprint(at5.seqs(t)); got != "[6]" {
		t.Fatalf("client at 5 got %s, want [6]", got)
	}
	if got := fmt.Sprint(at4.seqs(t)); got != "[5 6]" {
		t.Fatalf("client at 4 got %s, want [5 6]", got)
	}
	if got := fmt.Sprint(other.seqs(t)); got != "[1 2 3 4 5 6]" {
		t.Fatalf("the other client got %s", got)
	}
	// A cursor past the timeline's head is from another epoch: reset at once.
	future := &countSink{keep: true}
	if err := r.node.Attach(ctx, &Conn{Sink: future, Room: "f", Session: "x", Member: presence.Member{Session: "x"}}, 99, true); err != nil {
		t.Fatal(err)
	}
	future.mu.Lock()
	defer future.mu.Unlock()
	if len(future.frames) == 0 || !strings.Contains(string(future.frames[0]), `"reset":true`) {
		t.Fatalf("future cursor: %q", future.frames)
	}
}
