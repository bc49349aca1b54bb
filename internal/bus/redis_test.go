package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"roomcast/internal/message"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
	"roomcast/internal/timeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newRedisBus(t *testing.T, c rueidis.Client, prefix string) *Redis {
	t.Helper()
	b, err := NewRedis(c, RedisConfig{Prefix: prefix, RoomChannel: func(room string) string { return timeline.RedisChannel(prefix, room) },
		SubscribeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestRedisRoomOrder: 16 writers append concurrently through the Redis
// timeline; a subscriber of the room topic gets every message once, in seq
// order, decoded back to the same bytes.
func TestRedisRoomOrder(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	b := newRedisBus(t, c, prefix)
	tl := timeline.NewRedis(c, timeline.RedisConfig{Prefix: prefix})
	const writers, each = 16, 50
	got := make(chan *message.Message, writers*each)
	cancel, err := b.Subscribe(RoomTopic("o"), func(ev Event) {
		if ev.Type == EvMessage {
			got <- ev.Msg
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				m := &message.Message{ID: fmt.Sprintf("%d-%d", w, i), Room: "o", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "<hi>"}
				if _, err := tl.Append(context.Background(), m); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	for i := 1; i <= writers*each; i++ {
		select {
		case m := <-got:
			if m.Seq != uint64(i) {
				t.Fatalf("got seq %d, want %d", m.Seq, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out at seq %d", i)
		}
	}
}

// TestRedisContract runs the shared contract against the machine's Redis,
// each sub-test under its own key prefix.
func TestRedisContract(t *testing.T) {
	c := redistest.Client(t)
	runContract(t, func(t *testing.T) Bus { return newRedisBus(t, c, redistest.Prefix(t, c)) })
}

// TestRedisAcrossNodes: an event published by one node reaches the
// handlers of every node, its message intact.
func TestRedisAcrossNodes(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	b1, b2 := newRedisBus(t, c, prefix), newRedisBus(t, redistest.Client(t), prefix)
	r1, r2 := newRecorder(), newRecorder()
	subscribe(t, b1, Users, r1.handle)
	subscribe(t, b2, Users, r2.handle)
	m := &message.Message{ID: "u", Room: "r", Kind: message.KindNotice, Scope: message.ScopeUser, To: "alice", Text: "psst"}
	publish(t, b1, Users, Event{Type: EvUserMsg, User: "alice", Room: "r", Msg: m})
	for _, r := range []*recorder{r1, r2} {
		if ev := r.wait(t, 1)[0]; ev.User != "alice" || string(ev.Msg.Encoded()) != string(m.Encoded()) {
			t.Fatalf("bad user event %+v", ev)
		}
	}
}

// TestRedisUnsubscribe: once the last handler leaves, Redis stops sending
// the room's traffic to this node.
func TestRedisUnsubscribe(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	b := newRedisBus(t, c, prefix)
	ch := timeline.RedisChannel(prefix, "u")
	count := func() int64 {
		v, err := c.Do(context.Background(), c.B().PubsubShardnumsub().Channel(ch).Build()).AsIntMap()
		if err != nil {
			t.Fatal(err)
		}
		return v[ch]
	}
	cancel, err := b.Subscribe(RoomTopic("u"), func(Event) {})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d subscribers, want 1", n)
	}
	cancel()
	testutil.WaitFor(t, "Redis to drop the subscription", 10*time.Second, func() bool { return count() == 0 })
}

// TestRedisResubscribe: a Redis restart ends the subscription; the bus
// subscribes again by itself, sends EvResync, and delivers what follows.
func TestRedisResubscribe(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redistest.Client(t, srv.Addr())
	b := newRedisBus(t, c, "rs:")
	tl := timeline.NewRedis(c, timeline.RedisConfig{Prefix: "rs:"})
	events := make(chan Event, 16)
	if _, err := b.Subscribe(RoomTopic("a"), func(ev Event) { events <- ev }); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv.Start()
	select {
	case ev := <-events:
		if ev.Type != EvResync || ev.Room != "a" {
			t.Fatalf("want resync, got %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no resync after the restart")
	}
	if _, err := tl.Append(context.Background(), &message.Message{ID: "1", Room: "a", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "x"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Type != EvMessage || ev.Msg.Seq != 1 {
			t.Fatalf("want message 1, got %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message after the restart")
	}
}
