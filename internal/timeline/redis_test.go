package timeline

import (
	"context"
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
	msgs, head, first, err := tl.Range(ctx, "rt", 0, 10)
	if err != nil || len(msgs) != 1 || head != 1 || first != 1 {
		t.Fatalf("range: %d msgs head %d first %d err %v", len(msgs), head, first, err)
	}
	if got, want := string(msgs[0].Encoded()), string(m.Encoded()); got != want {
		t.Fatalf("round trip changed the message:\n got %s\nwant %s", got, want)
	}
	if h, err := tl.Head(ctx, "rt"); err != nil || h != 1 {
		t.Fatalf("head %d %v", h, err)
	}
	if h, err := tl.Head(ctx, "none"); err != nil || h != 0 {
		t.Fatalf("head of an empty room %d %v", h, err)
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
