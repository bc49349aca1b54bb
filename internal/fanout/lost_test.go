package fanout

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"roomcast/internal/bus"
	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/timeline"
)

// lostTimeline is a store that can lose everything (Redis restarted without
// persistence): lose swaps in an empty memory timeline. Its next Range, once
// armed, reads the store and then runs during before returning — what other
// nodes append meanwhile reaches the hub over the bus first.
type lostTimeline struct {
	mu     sync.Mutex
	cur    *timeline.Memory
	notify timeline.Notify
	during func()
}

func (l *lostTimeline) tl() *timeline.Memory { l.mu.Lock(); defer l.mu.Unlock(); return l.cur }

func (l *lostTimeline) lose() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur = timeline.NewMemory(timeline.Retention{}, l.notify)
}

func (l *lostTimeline) Append(ctx context.Context, m *message.Message) (uint64, error) {
	return l.tl().Append(ctx, m)
}

func (l *lostTimeline) Range(ctx context.Context, room string, after uint64, limit int) (timeline.Page, error) {
	p, err := l.tl().Range(ctx, room, after, limit)
	l.mu.Lock()
	fn := l.during
	l.during = nil
	l.mu.Unlock()
	if fn != nil {
		fn()
	}
	return p, err
}

func (l *lostTimeline) Head(ctx context.Context, room string) (timeline.Position, error) {
	return l.tl().Head(ctx, room)
}

func (l *lostTimeline) Recall(ctx context.Context, room, key string) (timeline.Ack, bool, error) {
	return l.tl().Recall(ctx, room, key)
}

func (l *lostTimeline) Rotate(ctx context.Context, room, from string) (string, error) {
	return l.tl().Rotate(ctx, room, from)
}

func (l *lostTimeline) Close() error { return nil }

// TestStaleEmptyReadAfterLossKeepsNewEpoch (issue 8, found by
// TestFaultRedisLost on a loaded machine): the store loses the room; the
// hub's repair read sees it empty (no epoch yet), but before that answer is
// handled another node's append has started the new epoch and its message
// reached the hub over the bus. The stale empty answer must not move the hub
// back to "no epoch" — that retired the new epoch, and every later message
// of it was dropped as late: the viewer never heard from the room again.
func TestStaleEmptyReadAfterLossKeepsNewEpoch(t *testing.T) {
	b := bus.NewMemory()
	tl := &lostTimeline{notify: busNotify(b)}
	tl.lose() // an empty store to start with
	n := manualNode(t, tl, b)
	ctx := context.Background()
	send := func(text string) {
		if _, err := tl.Append(ctx, &message.Message{ID: text, Room: "g", Kind: message.KindChat, Scope: message.ScopeRoom, Text: text}); err != nil {
			t.Error(err)
		}
	}
	viewer := &countSink{keep: true}
	if err := n.Attach(ctx, &Conn{Sink: viewer, Room: "g", Session: "v", Member: presence.Member{Session: "v"}}, 0, true); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a1", "a2", "a3"} {
		send(s)
	}
	for range 3 {
		n.tick(time.Now(), false, false)
	}

	tl.lose()
	tl.mu.Lock()
	tl.during = func() { send("b1") } // the new epoch starts while the empty answer is on its way
	tl.mu.Unlock()
	if err := b.Publish(ctx, bus.RoomTopic("g"), bus.Event{Type: bus.EvResync, Room: "g"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		n.tick(time.Now(), false, false)
	}
	send("b2")
	send("b3")
	for range 3 {
		n.tick(time.Now(), false, false)
	}

	pos, err := tl.Head(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	h := n.hubs["g"]
	n.mu.Unlock()
	h.mu.Lock()
	epoch, head := h.epoch, h.win.head
	h.mu.Unlock()
	if epoch != pos.Epoch || head != 3 {
		t.Fatalf("hub at epoch %q head %d, store at %q head %d", epoch, head, pos.Epoch, pos.Head)
	}
	if got, want := fmt.Sprint(viewer.texts(t)), "[a1 a2 a3 b1 b2 b3]"; got != want {
		t.Fatalf("viewer got %s, want %s", got, want)
	}
}
