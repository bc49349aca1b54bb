package timeline

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/message"
	"roomcast/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRedisContract runs the shared contract against the machine's Redis,
// each sub-test under its own key prefix (deleted afterwards).
func TestRedisContract(t *testing.T) {
	c := redistest.Client(t)
	runContract(t, func(t *testing.T, ret Retention, notify Notify) Timeline {
		return NewRedis(c, RedisConfig{Prefix: redistest.Prefix(t, c), Retention: ret})
	})
}

// TestRedisRoundTrip checks that a message comes back from Redis byte for
// byte as it was sealed, with every field the encoder writes.
func TestRedisRoundTrip(t *testing.T) {
	c := redistest.Client(t)
	tl := NewRedis(c, RedisConfig{Prefix: redistest.Prefix(t, c)})
	ctx := context.Background()
	m := &message.Message{ID: "x1", Room: "rt", Kind: message.KindGift, Scope: message.ScopeRoom, To: "",
		User: &message.User{ID: "u1", Name: "Zoë <&> \"q\"", Level: 42}, Text: "héllo\n\u2028 \\ / 😀",
		Gift: &message.Gift{ID: "rocket", Name: "Rocket", ValueCents: 50000, Count: 3}, Priority: 77, Ref: "r0",
		Data: []byte(`{"a":[1,2,{"b":"<c>"}]}`)}
	if _, err := tl.Append(ctx, m); err != nil {
		t.Fatal(err)
	}
	p, err := tl.Range(ctx, "rt", 0, 10)
	if err != nil || len(p.Msgs) != 1 || p.Head != 1 || p.First != 1 {
		t.Fatalf("range: %d msgs head %d first %d err %v", len(p.Msgs), p.Head, p.First, err)
	}
	if got, want := string(p.Msgs[0].Encoded()), string(m.Encoded()); got != want {
		t.Fatalf("round trip changed the message:\n got %s\nwant %s", got, want)
	}
	if h, err := tl.Head(ctx, "rt"); err != nil || h.Head != 1 || h.Epoch != m.Epoch {
		t.Fatalf("head %+v %v", h, err)
	}
	if h, err := tl.Head(ctx, "none"); err != nil || h.Head != 0 {
		t.Fatalf("head of an empty room %+v %v", h, err)
	}
}

// TestRedisLostCounter: when Redis loses a room (a restart without
// persistence, simulated by deleting its counter and epoch while an old
// stream entry and dedupe key survive), the next append starts a new epoch
// at seq 1 with a clean stream, and a dedupe key of the old epoch does not
// answer for the new one.
func TestRedisLostCounter(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	tl := NewRedis(c, RedisConfig{Prefix: prefix})
	ctx := context.Background()
	var old *message.Message
	for i := 0; i < 3; i++ {
		old = &message.Message{ID: fmt.Sprint("old", i), Room: "lc", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "old", Dedupe: fmt.Sprint("u:", i)}
		if _, err := tl.Append(ctx, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Do(ctx, c.B().Del().Key(prefix+"{lc}:s", prefix+"{lc}:e").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if h, err := tl.Head(ctx, "lc"); err != nil || h != (Position{}) {
		t.Fatalf("head after the loss: %+v %v", h, err)
	}
	m := &message.Message{ID: "new", Room: "lc", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "new", Dedupe: "u:2"}
	seq, err := tl.Append(ctx, m)
	if err != nil || seq != 1 || m.Epoch == "" || m.Epoch == old.Epoch {
		t.Fatalf("append after the loss: seq %d epoch %q (old %q) err %v", seq, m.Epoch, old.Epoch, err)
	}
	p, err := tl.Range(ctx, "lc", 0, 10)
	if err != nil || len(p.Msgs) != 1 || p.Msgs[0].ID != "new" || p.Epoch != m.Epoch || p.First != 1 {
		t.Fatalf("range after the loss: %+v %v", p, err)
	}
}

// BenchmarkRedisAppend measures appends into one hot room from many
// goroutines (rueidis pipelines them on one connection): ns/op is the
// throughput cost, and the p99 metric the append latency.
func BenchmarkRedisAppend(b *testing.B) {
	c := redistest.Client(b)
	tl := NewRedis(c, RedisConfig{Prefix: redistest.Prefix(b, c)})
	b.SetParallelism(32)
	var mu sync.Mutex
	var lat []time.Duration
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			m := &message.Message{ID: "x", Room: "hot", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "hello world"}
			start := time.Now()
			if _, err := tl.Append(context.Background(), m); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	}
}
