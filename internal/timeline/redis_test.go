package timeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"roomcast/internal/auth"
	"roomcast/internal/message"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bucketStart is a second into the dedupe bucket after now's.
func bucketStart() time.Time {
	l := bucketLen.Milliseconds()
	return time.UnixMilli((time.Now().UnixMilli()/l+1)*l + 1000)
}

// TestRedisContract runs the shared contract against the machine's Redis,
// each sub-test under its own key prefix (deleted afterwards).
func TestRedisContract(t *testing.T) {
	c := redistest.Client(t)
	newTL := func(t *testing.T, ret Retention, notify Notify) Timeline {
		return NewRedis(c, RedisConfig{Prefix: redistest.Prefix(t, c), Retention: ret})
	}
	runContract(t, newTL)
	runBatchEntries(t, newTL)
	t.Run("DedupeBuckets", func(t *testing.T) { runDedupeBuckets(t, newTL) })
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
	t.Run("DedupeBuckets", func(t *testing.T) { runDedupeBuckets(t, newTL) })
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
// persistence, simulated by deleting its meta hash while an old stream
// entry and the previous bucket's acks survive), the next append starts a
// new epoch at seq 1 with a clean stream, and a dedupe key of the old epoch
// does not answer for the new one.
func TestRedisLostCounter(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	tl := NewRedis(c, RedisConfig{Prefix: prefix})
	now := bucketStart()
	tl.now = func() time.Time { return now }
	ctx := context.Background()
	var old *message.Message
	for i := 0; i < 3; i++ {
		old = &message.Message{ID: fmt.Sprint("old", i), Room: "lc", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "old", Dedupe: fmt.Sprint("u:", i)}
		if _, err := tl.Append(ctx, old); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(bucketLen) // the next bucket: the acks move to the previous bucket's hash
	if _, err := tl.Head(ctx, "lc"); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.Range(ctx, "lc", 0, 1); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Do(ctx, c.B().Exists().Key(fmt.Sprint(prefix, "{lc}:A:", bucketOf(now)-1)).Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("the previous bucket's hash: %d %v", n, err)
	}
	if err := c.Do(ctx, c.B().Del().Key(prefix+"{lc}:m").Build()).Error(); err != nil {
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

// TestRedisMigrate: a room of the layout before the meta hash (counter :s,
// epoch :e as a build of 2026-12-01 wrote it, minute :t, acks in the
// bucket :D:K) is carried over by the first append: the counter and epoch
// go on, an ack remembered before answers a retry, the old names are gone
// except the counter, which now makes an older node's INCRBY fail. Before
// that, reads answer from the old names.
func TestRedisMigrate(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	tl := NewRedis(c, RedisConfig{Prefix: prefix})
	ctx := context.Background()
	now := time.Now()
	tl.now = func() time.Time { return now }
	base := prefix + "{mig}"
	bucket := fmt.Sprint(base, ":D:", oldBucketOf(now))
	ts := now.UnixMilli()
	var cmds rueidis.Commands
	for seq := 1; seq <= 7; seq++ {
		m := &message.Message{Seq: uint64(seq), ID: fmt.Sprint("o", seq), Room: "mig", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "old", TS: ts}
		cmds = append(cmds, c.B().Xadd().Key(base+":x").Id(fmt.Sprint(seq, "-0")).FieldValue().FieldValue("t", fmt.Sprint(ts)).FieldValue("n", "1").FieldValue("m", string(m.AppendJSON(nil))).Build())
	}
	cmds = append(cmds, c.B().Set().Key(base+":s").Value("7").Build(), c.B().Set().Key(base+":e").Value("oldepoch 123").Build(),
		c.B().Set().Key(base+":t").Value(fmt.Sprint(now.Unix()/60)).Build(),
		c.B().Hset().Key(bucket).FieldValue().FieldValue("@", "oldepoch").FieldValue("u:5", fmt.Sprint("oldepoch\n5\n", ts, "\n0\no5")).
			FieldValue("u:x", fmt.Sprint("otherepoch\n2\n", ts, "\n0\nox")).Build(),
		c.B().Pexpire().Key(bucket).Milliseconds(600000).Build())
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	if h, err := tl.Head(ctx, "mig"); err != nil || h != (Position{Head: 7, Epoch: "oldepoch"}) {
		t.Fatalf("head before the carry-over: %+v %v", h, err)
	}
	if p, err := tl.Range(ctx, "mig", 5, 10); err != nil || p.Head != 7 || p.Epoch != "oldepoch" || len(p.Msgs) != 2 || p.Msgs[1].ID != "o7" {
		t.Fatalf("range before the carry-over: %+v %v", p, err)
	}
	if a, ok, err := tl.Recall(ctx, "mig", "u:5"); err != nil || !ok || a.Seq != 5 || a.Epoch != "oldepoch" {
		t.Fatalf("recall before the carry-over: %+v %v %v", a, ok, err)
	}
	ms := []*message.Message{{ID: "n1", Room: "mig", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "new", Dedupe: "u:5"},
		{ID: "n2", Room: "mig", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "new", Dedupe: "u:x"},
		{ID: "n3", Room: "mig", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "new"}}
	errs, err := tl.AppendBatch(ctx, ms)
	if err != nil || errs == nil || !errors.Is(errs[0], ErrDuplicate) || errs[1] != nil || errs[2] != nil {
		t.Fatalf("append over the old layout: %v %v", errs, err)
	}
	if ms[0].Seq != 5 || ms[0].ID != "o5" || ms[1].Seq != 8 || ms[2].Seq != 9 || ms[2].Epoch != "oldepoch" {
		t.Fatalf("carried over: seqs %d(%s) %d %d epoch %q", ms[0].Seq, ms[0].ID, ms[1].Seq, ms[2].Seq, ms[2].Epoch)
	}
	if v, err := c.Do(ctx, c.B().Get().Key(base+":s").Build()).ToString(); err != nil || v != movedMarker {
		t.Fatalf("the old counter: %q %v", v, err)
	}
	if err := c.Do(ctx, c.B().Incrby().Key(base+":s").Increment(1).Build()).Error(); err == nil {
		t.Fatal("an older node's INCRBY of the old counter succeeded")
	}
	if n, err := c.Do(ctx, c.B().Exists().Key(base+":e", base+":t", bucket).Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("old names left: %d %v", n, err)
	}
	if ttl, err := c.Do(ctx, c.B().Pttl().Key(base+":m").Build()).AsInt64(); err != nil || ttl != -1 {
		t.Fatalf("the meta hash's TTL: %d %v, want none", ttl, err)
	}
	if h, err := tl.Head(ctx, "mig"); err != nil || h != (Position{Head: 9, Epoch: "oldepoch"}) {
		t.Fatalf("head after the carry-over: %+v %v", h, err)
	}
	if a, ok, err := tl.Recall(ctx, "mig", "u:x"); err != nil || !ok || a.Seq != 8 || a.Epoch != "oldepoch" {
		t.Fatalf("recall after the carry-over: %+v %v %v", a, ok, err)
	}
	p, err := tl.Range(ctx, "mig", 6, 10)
	if err != nil || p.Head != 9 || p.Epoch != "oldepoch" || len(p.Msgs) != 3 || p.Msgs[0].ID != "o7" || p.Msgs[2].ID != "n3" {
		t.Fatalf("range after the carry-over: %+v %v", p, err)
	}
	// A room made by a new node has the marker too: an older node never
	// starts a second counter beside its meta hash.
	if _, err := tl.Append(ctx, &message.Message{ID: "f", Room: "fresh", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "f"}); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Do(ctx, c.B().Get().Key(prefix+"{fresh}:s").Build()).ToString(); err != nil || v != movedMarker {
		t.Fatalf("a new room's old counter name: %q %v", v, err)
	}
}

// TestRedisIdleRoomAcks: a room's acks leave its meta hash once their
// bucket is over, by the next append or by a reader, and the previous
// bucket's hash expires; a dedupe key that starts with "@" cannot touch
// the meta fields.
func TestRedisIdleRoomAcks(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	tl := NewRedis(c, RedisConfig{Prefix: prefix})
	ctx := context.Background()
	now := bucketStart()
	tl.now = func() time.Time { return now }
	for _, key := range []string{"u:1", "@s", "@"} {
		m := &message.Message{ID: key, Room: "idle", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "x", Dedupe: key}
		if _, err := tl.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if a, ok, err := tl.Recall(ctx, "idle", "@s"); err != nil || !ok || a.Seq != 2 {
		t.Fatalf("recall @s: %+v %v %v", a, ok, err)
	}
	meta := prefix + "{idle}:m"
	hlen := func() int64 {
		n, err := c.Do(ctx, c.B().Hlen().Key(meta).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := hlen(); n != 6+3 {
		t.Fatalf("meta hash: %d fields, want 6 meta fields and 3 acks", n)
	}
	now = now.Add(bucketLen)
	if p, err := tl.Range(ctx, "idle", 0, 10); err != nil || p.Head != 3 {
		t.Fatalf("range: %+v %v", p, err)
	}
	if n := hlen(); n != 5 {
		t.Fatalf("meta hash after the bucket: %d fields, want the 5 meta fields", n)
	}
	prev := fmt.Sprint(prefix, "{idle}:A:", bucketOf(now)-1)
	if ttl, err := c.Do(ctx, c.B().Pttl().Key(prev).Build()).AsInt64(); err != nil || ttl <= 0 {
		t.Fatalf("the previous bucket's hash: TTL %d %v", ttl, err)
	}
	if a, ok, err := tl.Recall(ctx, "idle", "u:1"); err != nil || !ok || a.Seq != 1 {
		t.Fatalf("recall from the previous bucket: %+v %v %v", a, ok, err)
	}
	now = now.Add(DedupeTTL) // the previous bucket's acks are all older than DedupeTTL
	if _, err := tl.Head(ctx, "idle"); err != nil {
		t.Fatal(err)
	}
	m := &message.Message{ID: "late", Room: "idle", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "x", Dedupe: "u:1"}
	if seq, err := tl.Append(ctx, m); err != nil || seq != 4 {
		t.Fatalf("append two buckets later: %d %v", seq, err)
	}
	if n, err := c.Do(ctx, c.B().Exists().Key(prev).Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("the bucket before the previous one is still there: %d %v", n, err)
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
	now := bucketStart()
	tl.now = func() time.Time { return now }
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
	if _, err := tl.AppendBatch(ctx, batch(1, true)); err != nil { // loads the script, starts the epoch and meta hash
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after  time.Duration // the clock moves on first, and one append rotates
		n      int
		dedupe bool
		want   int64
	}{
		{bucketLen, 100, false, 5}, // the next bucket: lookups read the previous one's hash too
		{0, 100, true, 6},
		{DedupeTTL, 100, true, 5}, // the previous bucket's acks are all old now
		{0, 100, false, 5},
	} {
		if tc.after > 0 {
			now = now.Add(tc.after)
			if _, err := tl.AppendBatch(ctx, batch(1, true)); err != nil {
				t.Fatal(err)
			}
		}
		before := commands()
		if _, err := tl.AppendBatch(ctx, batch(tc.n, tc.dedupe)); err != nil {
			t.Fatal(err)
		}
		if got := commands() - before; got != tc.want {
			t.Errorf("a batch of %d (dedupe %v) cost %d commands, want %d", tc.n, tc.dedupe, got, tc.want)
		}
	}
	xlen := func() int64 {
		n, err := c.Do(ctx, c.B().Xlen().Key("t:{r}:x").Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	entries := xlen()
	big := batch(2*maxEntry+10, false)
	if _, err := tl.AppendBatch(ctx, big); err != nil {
		t.Fatal(err)
	}
	if n := xlen() - entries; n != 3 {
		t.Fatalf("a batch of 2×maxEntry+10 took %d stream entries, want 3", n)
	}
	from := big[0].Seq - 1
	p, err := tl.Range(ctx, "r", from+maxEntry-3, 10)
	if err != nil || len(p.Msgs) != 10 || p.Msgs[0].Seq != from+maxEntry-2 || p.Msgs[9].Seq != from+maxEntry+7 {
		t.Fatalf("range across the entries of one batch: %d msgs (%v)", len(p.Msgs), err)
	}
}

// BenchmarkRedisAppendBatch: one room's group-committed batches of 64, as
// a hot room's append calls are (issue 14), plain and with a dedupe key per
// message; ns/op is per call, and Redis's own time per script call (INFO
// commandstats, usec_per_call of evalsha) is reported as redis-µs/call.
func BenchmarkRedisAppendBatch(b *testing.B) {
	for _, dedupe := range []bool{false, true} {
		b.Run(fmt.Sprint("dedupe=", dedupe), func(b *testing.B) {
			srv := redistest.StartServer(b)
			c := redistest.Client(b, srv.Addr())
			tl := NewRedis(c, RedisConfig{Prefix: "b:"})
			ctx := context.Background()
			const n = 64
			ms := make([]*message.Message, n)
			text := strings.Repeat("弹幕 danmaku ", 3)
			run := func(i int) {
				for j := range ms {
					ms[j] = &message.Message{ID: fmt.Sprint("m", i, "-", j), Room: "hot", Kind: message.KindChat, Scope: message.ScopeRoom, Text: text,
						User: &message.User{ID: fmt.Sprint("u", j), Name: "viewer", Level: 3}}
					if dedupe {
						ms[j].Dedupe = fmt.Sprint(j, ":u", j, ":c-", i)
					}
				}
				if _, err := tl.AppendBatch(ctx, ms); err != nil {
					b.Fatal(err)
				}
			}
			run(-1) // loads the script
			if err := c.Do(ctx, c.B().ConfigResetstat().Build()).Error(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run(i)
			}
			b.StopTimer()
			if dedupe { // what an ack costs Redis's memory: the meta hash's size per field
				size, err1 := c.Do(ctx, c.B().MemoryUsage().Key("b:{hot}:m").Samples(0).Build()).AsInt64()
				fields, err2 := c.Do(ctx, c.B().Hlen().Key("b:{hot}:m").Build()).AsInt64()
				if err := errors.Join(err1, err2); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(size)/float64(fields), "redis-B/ack")
			}
			info, err := c.Do(ctx, c.B().Info().Section("commandstats").Build()).ToString()
			if err != nil {
				b.Fatal(err)
			}
			for _, line := range strings.Split(info, "\r\n") {
				if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:"); ok {
					for _, f := range strings.Split(rest, ",") {
						if v, ok := strings.CutPrefix(f, "usec_per_call="); ok {
							us, _ := strconv.ParseFloat(v, 64)
							b.ReportMetric(us, "redis-µs/call")
						}
					}
				}
			}
		})
	}
}

// TestRedisSweep: the acks of a room this node sent idempotent messages to
// leave its meta hash once they are all older than DedupeTTL, with nobody
// sending to or reading the room; Close stops the sweeping (goleak).
func TestRedisSweep(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	tl := NewRedis(c, RedisConfig{Prefix: prefix, Sweep: 5 * time.Millisecond})
	defer tl.Close()
	var now atomic.Int64
	now.Store(bucketStart().UnixMilli())
	tl.now = func() time.Time { return time.UnixMilli(now.Load()) }
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		m := &message.Message{ID: fmt.Sprint(i), Room: "sw", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "x", Dedupe: fmt.Sprint("u:", i)}
		if _, err := tl.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	hlen := func() int64 {
		n, err := c.Do(ctx, c.B().Hlen().Key(prefix+"{sw}:m").Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := hlen(); n != 6+3 {
		t.Fatalf("meta hash: %d fields", n)
	}
	now.Add(bucketLen.Milliseconds()) // the next bucket: the acks are still young, none is swept
	if tl.sweep.sweep(ctx); hlen() != 6+3 {
		t.Fatalf("swept young acks: %d fields left", hlen())
	}
	now.Add(DedupeTTL.Milliseconds())
	remembered := func() int {
		tl.sweep.mu.Lock()
		defer tl.sweep.mu.Unlock()
		return len(tl.sweep.rooms)
	}
	// The sweeper trims the hash in Redis first and forgets the room after:
	// wait for both, or a check between the two sees the room still remembered.
	testutil.WaitFor(t, "the sweep: 5 meta fields left and the room forgotten", 10*time.Second, func() bool { return hlen() == 5 && remembered() == 0 })
	if h, err := tl.Head(ctx, "sw"); err != nil || h.Head != 3 {
		t.Fatalf("head after the sweep: %+v %v", h, err)
	}
}
