package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"roomcast/internal/message"
)

// factory builds a fresh Bus for one contract sub-test; it closes it after
// the test.
type factory func(t *testing.T) Bus

// recorder collects the events one handler receives.
type recorder struct {
	mu  sync.Mutex
	evs []Event
	got chan struct{} // signalled on each event
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1)} }

// handle records ev. EvResync only says that events may have been lost (the
// Redis bus sends it after subscribing again, which a topic's last handler
// leaving and a new one arriving can look like); handlers tolerate it at any
// time, so the contract does not count it.
func (r *recorder) handle(ev Event) {
	if ev.Type == EvResync {
		return
	}
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
}

// wait returns the first n events, failing the test if they do not come.
func (r *recorder) wait(t *testing.T, n int) []Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.evs) >= n {
			evs := append([]Event(nil), r.evs[:n]...)
			r.mu.Unlock()
			return evs
		}
		have := len(r.evs)
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-timeout:
			t.Fatalf("got %d of %d events", have, n)
		}
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

func subscribe(t *testing.T, b Bus, tp Topic, h Handler) func() {
	t.Helper()
	cancel, err := b.Subscribe(tp, h)
	if err != nil {
		t.Fatalf("subscribe %s: %v", tp, err)
	}
	t.Cleanup(cancel)
	return cancel
}

func publish(t *testing.T, b Bus, tp Topic, ev Event) {
	t.Helper()
	if err := b.Publish(context.Background(), tp, ev); err != nil {
		t.Fatalf("publish %s: %v", tp, err)
	}
}

func chat(room string, seq uint64, text string) *message.Message {
	m := &message.Message{ID: fmt.Sprint("m", seq), Seq: seq, Room: room, Kind: message.KindChat, Scope: message.ScopeRoom,
		User: &message.User{ID: "u", Name: `Zoë <&> "q"`, Level: 3}, Text: text}
	m.Seal()
	return m
}

// runContract is the contract every Bus implementation passes: a topic's
// handlers get every event published after Subscribe returned, in publish
// order, with its fields and its message's bytes intact; topics are
// separate; a cancelled handler gets nothing more.
func runContract(t *testing.T, newBus factory) {
	t.Run("SharedTopicsInOrder", func(t *testing.T) { contractSharedTopicsInOrder(t, newBus) })
	t.Run("RoomTopicsCarryMessages", func(t *testing.T) { contractRoomTopicsCarryMessages(t, newBus) })
	t.Run("EveryHandlerAndCancel", func(t *testing.T) { contractEveryHandlerAndCancel(t, newBus) })
	t.Run("SubscribeAfterClose", func(t *testing.T) { contractSubscribeAfterClose(t, newBus) })
}

func contractSharedTopicsInOrder(t *testing.T, newBus factory) {
	b := newBus(t)
	users, control := newRecorder(), newRecorder()
	subscribe(t, b, Users, users.handle)
	subscribe(t, b, Control, control.handle)
	dm := &message.Message{ID: "d", Room: "r", Kind: message.KindNotice, Scope: message.ScopeUser, To: "alice", Text: "psst\n😀"}
	dm.Seal()
	const n = 100
	for i := 0; i < n; i++ {
		publish(t, b, Users, Event{Type: EvUserMsg, Room: "r", User: fmt.Sprint("user", i), Msg: dm})
	}
	publish(t, b, Control, Event{Type: EvKick, Room: "r", User: "bob", Until: 42, Data: []byte("x")})
	for i, ev := range users.wait(t, n) {
		if ev.Type != EvUserMsg || ev.Room != "r" || ev.User != fmt.Sprint("user", i) || string(ev.Msg.Encoded()) != string(dm.Encoded()) {
			t.Fatalf("user event %d: %+v", i, ev)
		}
	}
	if ev := control.wait(t, 1)[0]; ev.Type != EvKick || ev.Room != "r" || ev.User != "bob" || ev.Until != 42 || string(ev.Data) != "x" || ev.Msg != nil {
		t.Fatalf("kick %+v", ev)
	}
	if users.count() != n {
		t.Fatalf("the users topic got %d events, want %d", users.count(), n)
	}
}

func contractRoomTopicsCarryMessages(t *testing.T, newBus factory) {
	b := newBus(t)
	a, other := newRecorder(), newRecorder()
	subscribe(t, b, RoomTopic("a"), a.handle)
	subscribe(t, b, RoomTopic("b"), other.handle)
	for seq := uint64(1); seq <= 20; seq++ {
		publish(t, b, RoomTopic("a"), Event{Type: EvMessage, Room: "a", Msg: chat("a", seq, "<hi> \u2028")})
	}
	publish(t, b, RoomTopic("b"), Event{Type: EvMessage, Room: "b", Msg: chat("b", 1, "other room")})
	for i, ev := range a.wait(t, 20) {
		want := chat("a", uint64(i+1), "<hi> \u2028")
		if ev.Type != EvMessage || ev.Room != "a" || ev.Msg.Seq != uint64(i+1) || string(ev.Msg.Encoded()) != string(want.Encoded()) {
			t.Fatalf("room event %d: %+v", i, ev)
		}
	}
	if ev := other.wait(t, 1)[0]; ev.Room != "b" || ev.Msg.Text != "other room" {
		t.Fatalf("room b got %+v", ev)
	}
	if a.count() != 20 {
		t.Fatalf("room a got %d events, want 20", a.count())
	}
}

func contractEveryHandlerAndCancel(t *testing.T, newBus factory) {
	b := newBus(t)
	first, second := newRecorder(), newRecorder()
	cancelFirst := subscribe(t, b, Control, first.handle)
	cancelSecond := subscribe(t, b, Control, second.handle)
	publish(t, b, Control, Event{Type: EvSettings, Data: []byte("1")})
	first.wait(t, 1)
	second.wait(t, 1)
	cancelFirst()
	cancelFirst() // cancelling twice is harmless
	publish(t, b, Control, Event{Type: EvSettings, Data: []byte("2")})
	if evs := second.wait(t, 2); string(evs[1].Data) != "2" {
		t.Fatalf("second handler got %+v", evs)
	}
	// Handlers run in subscription order, so the cancelled one would
	// have had the event by now.
	if n := first.count(); n != 1 {
		t.Fatalf("a cancelled handler got %d events", n)
	}
	// After the topic's last handler left, a new one gets what follows.
	cancelSecond()
	third := newRecorder()
	subscribe(t, b, Control, third.handle)
	publish(t, b, Control, Event{Type: EvSettings, Data: []byte("3")})
	if ev := third.wait(t, 1)[0]; string(ev.Data) != "3" {
		t.Fatalf("new handler got %+v", ev)
	}
}

func contractSubscribeAfterClose(t *testing.T, newBus factory) {
	b := newBus(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(Users, func(Event) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T) Bus {
		b := NewMemory()
		t.Cleanup(func() { b.Close() })
		return b
	})
}
