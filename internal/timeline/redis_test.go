package timeline

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"roomcast/internal/auth"
	"roomcast/internal/message"
	"roomcast/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRedisContract runs the shared contract against the machine's Redis,
// each sub-test under its own key prefix (deleted afterwards).
func TestRedisContract(t *testing.T) {
	c := redistest.Client(t)
	newTL := func(t *testing.T, ret Retention, notify Notify) Timeline {
		return NewRedis(c, RedisConfig{Prefix: redistest.Prefix(t, c), Retention: ret})
	}
	runContract(t, newTL)
	runBatchEntries(t, newTL)
}

// TestRedisClusterContract: every script touches only names of the room's
// hash tag (the dedupe buckets among its KEYS), so the contract holds on a
// 3-shard Redis Cluster (scripts/redis-cluster.sh) too.
func TestRedisClusterContract(t *testing.T) {
	c := redistest.Client(t, redistest.StartCluster(t)...)
	newTL := func(t *testing.T, ret Retention, notify Notify) Timeline {
		return NewRedis(c, RedisConfig{Prefix: redistest.NewPrefix(), Retention: ret})
	}
	runContract(t, newTL)
	runBatchEntries(t, newTL)
	runBatchContract(t, newTL(t, Retention{}, nil).(batcher))
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

// TestRedisOldLayout: a room written by the one-entry-per-message layout
// (entries with fields t and m, a bare epoch) is read as it was and
// continues: the next batch takes the next seqs and both layouts read back
// in order.
func TestRedisOldLayout(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	tl := NewRedis(c, RedisConfig{Prefix: prefix})
	ctx := context.Background()
	base := prefix + "{old}"
	ts := time.Now().UnixMilli()
	var cmds rueidis.Commands
	for seq := 1; seq <= 3; seq++ {
		m := &message.Message{Seq: uint64(seq), ID: fmt.Sprint("o", seq), Room: "old", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "old", TS: ts}
		cmds = append(cmds, c.B().Xadd().Key(base+":x").Id(fmt.Sprint(seq, "-0")).FieldValue().FieldValue("t", fmt.Sprint(ts)).FieldValue("m", string(m.AppendJSON(nil))).Build())
	}
	cmds = append(cmds, c.B().Set().Key(base+":s").Value("3").Build(), c.B().Set().Key(base+":e").Value("oldepoch").Build())
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	ms := []*message.Message{{ID: "n1", Room: "old", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "new"},
		{ID: "n2", Room: "old", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "new"}}
	if _, err := tl.AppendBatch(ctx, ms); err != nil || ms[0].Seq != 4 || ms[1].Seq != 5 || ms[1].Epoch != "oldepoch" {
		t.Fatalf("append over the old layout: %v, seqs %d %d epoch %q", err, ms[0].Seq, ms[1].Seq, ms[1].Epoch)
	}
	p, err := tl.Range(ctx, "old", 2, 10)
	if err != nil || p.Head != 5 || p.First != 1 || p.Epoch != "oldepoch" || len(p.Msgs) != 3 {
		t.Fatalf("range: %+v %v", p, err)
	}
	for i, id := range []string{"o3", "n1", "n2"} {
		if p.Msgs[i].ID != id || p.Msgs[i].Seq != uint64(i+3) {
			t.Fatalf("range[%d]: %s seq %d, want %s", i, p.Msgs[i].ID, p.Msgs[i].Seq, id)
		}
	}
	if h, err := tl.Head(ctx, "old"); err != nil || h != (Position{Head: 5, Epoch: "oldepoch"}) {
		t.Fatalf("head %+v %v", h, err)
	}
}

// TestRedisBatchCommands: storing a batch costs Redis a fixed number of
// commands whatever its size (issue 14: ≤ 0.1 commands per message), as
// Redis counts them (commands run by the script included), and a batch
// larger than one entry holds reads back whole.
func TestRedisBatchCommands(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redistest.Client(t, srv.Addr())
	tl := NewRedis(c, RedisConfig{Prefix: "t:"})
	ctx := context.Background()
	batch := func(n int, dedupe bool) []*message.Message {
		ms := make([]*message.Message, n)
		for i := range ms {
			ms[i] = &message.Message{ID: fmt.Sprint("m", i), Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "hello"}
			if dedupe {
				ms[i].Dedupe = "u:" + auth.RandomHex(6)
			}
		}
		return ms
	}
	// commands is what Redis counted, by INFO commandstats, leaving out
	// the INFO calls themselves and the client's connection upkeep (PING,
	// HELLO of a new connection, CLUSTER SLOTS).
	commands := func() int64 {
		info, err := c.Do(ctx, c.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, line := range strings.Split(info, "\r\n") {
			name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
			if !ok || strings.HasPrefix(name, "cluster") || slices.Contains([]string{"info", "ping", "hello", "client"}, name) {
				continue
			}
			calls, _, _ := strings.Cut(rest, ",")
			v, err := strconv.ParseInt(calls, 10, 64)
			if err != nil {
				t.Fatalf("commandstats %q: %v", line, err)
			}
			n += v
		}
		return n
	}
	if _, err := tl.AppendBatch(ctx, batch(1, true)); err != nil { // loads the script, starts the epoch and buckets
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n      int
		dedupe bool
		most   int64
	}{{100, false, 5}, {100, true, 8}} {
		before, minute := commands(), time.Now().Unix()/60
		if _, err := tl.AppendBatch(ctx, batch(tc.n, tc.dedupe)); err != nil {
			t.Fatal(err)
		}
		if time.Now().Unix()/60 != minute { // the once-a-minute SET and PEXPIRE, and maybe new buckets
			tc.most += 4
		}
		if got := commands() - before; got > tc.most {
			t.Errorf("a batch of %d (dedupe %v) cost %d commands, want at most %d", tc.n, tc.dedupe, got, tc.most)
		}
	}
	big := batch(2*maxEntry+10, false)
	if _, err := tl.AppendBatch(ctx, big); err != nil {
		t.Fatal(err)
	}
	from := big[0].Seq - 1
	p, err := tl.Range(ctx, "r", from+maxEntry-3, 10)
	if err != nil || len(p.Msgs) != 10 || p.Msgs[0].Seq != from+maxEntry-2 || p.Msgs[9].Seq != from+maxEntry+7 {
		t.Fatalf("range across the entries of one batch: %d msgs (%v)", len(p.Msgs), err)
	}
	if n, err := c.Do(ctx, c.B().Xlen().Key("t:{r}:x").Build()).AsInt64(); err != nil || n != 6 {
		t.Fatalf("stream entries: %d %v, want 6 (1 + 1 + 1 + 3)", n, err)
	}
}
