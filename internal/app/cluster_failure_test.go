package app

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/message"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// failFast bounds a send while Redis is down: it must fail rather than hang
// (a refused connection fails at once; the gate then fails fast). A busy
// CI machine answers even a fast failure late, so the bound is generous.
const failFast = 10 * time.Second

// TestClusterRedisRestart: Redis (test-owned, append-only file fsynced on
// every write) is killed and restarted under two roomcast processes sharing
// MariaDB, while writers on both nodes keep sending and WebSocket readers
// and pollers on both keep reading. Meanwhile sends fail fast with 503
// unavailable, polls are answered stale from the node's cache and the
// WebSocket connections stay open; afterwards everything resumes by itself
// and every reader holds every acknowledged message, gap-free.
func TestClusterRedisRestart(t *testing.T) {
	srv := redistest.StartServer(t)
	_, cl := startNodes(t, 2, clusterArgs(srv.URL(), "rr:", redistest.MySQL(t)))
	a, b := cl[0], cl[1]
	a.createRoom("r")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	acked := newAcks()
	finished := make(chan struct{})
	done := func(last uint64) bool {
		select {
		case <-finished:
			return last >= acked.max.Load()
		default:
			return false
		}
	}
	var readers, wsReaders []*seen
	var wg sync.WaitGroup
	for i, s := range cl {
		ws, pl := &seen{name: fmt.Sprint("ws", i)}, &seen{name: fmt.Sprint("poll", i)}
		readers, wsReaders = append(readers, ws, pl), append(wsReaders, ws)
		wg.Add(2)
		go func(s *server) { defer wg.Done(); readWS(ctx, ws, "r", []*server{s}, done) }(s)
		go func(s *server) { defer wg.Done(); readPoll(ctx, pl, "r", []*server{s}, done) }(s)
	}
	attachedEverywhere(t, a, "r", len(readers))
	errc := make(chan error, 8)
	var ww sync.WaitGroup
	for w := 0; w < 4; w++ {
		ww.Add(1)
		go func(w int) {
			defer ww.Done()
			s := cl[w%2]
			write(ctx, s, s.token(fmt.Sprint("w", w), auth.RoleViewer, 5), "r", 50, acked, 20*time.Millisecond, errc)
		}(w)
	}
	testutil.WaitFor(t, "traffic before the outage", 30*time.Second, func() bool { return acked.max.Load() >= 20 })
	srv.Kill()
	// While Redis is down: a send fails fast with 503, a poll is stale.
	tok := a.token("probe", auth.RoleViewer, 1)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	code, raw := b.request(ctx, "POST", "/api/rooms/r/messages", tok, map[string]string{"kind": "chat", "text": "x"})
	took := time.Since(start)
	t.Logf("send with Redis down: %d in %v", code, took)
	if code != 503 || took > failFast {
		t.Errorf("send with Redis down: %d in %v: %s", code, took, raw)
	}
	code, raw = a.request(ctx, "GET", "/api/rooms/r/messages?cursor=1", "", nil)
	var pa struct {
		Stale bool `json:"stale"`
	}
	if json.Unmarshal(raw, &pa); code != 200 || !pa.Stale {
		t.Errorf("poll with Redis down: %d %s", code, raw)
	}
	time.Sleep(time.Second)
	srv.Start()
	ww.Wait()
	close(finished)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if acked.n503.Load() == 0 {
		t.Error("no send saw Redis down")
	}
	checkReaders(t, readers, acked, acked.max.Load())
	for _, r := range wsReaders {
		if n := r.dials.Load(); n != 1 {
			t.Errorf("%s: the WebSocket connection was reopened %d times", r.name, n-1)
		}
	}
	t.Logf("%d sends refused with 503 while Redis was down; %d acknowledged, all delivered in order", acked.n503.Load(), len(acked.ids))
}

// TestClusterRedisCluster runs the cross-node ordering check against a
// 3-shard Redis Cluster started by scripts/redis-cluster.sh.
func TestClusterRedisCluster(t *testing.T) {
	seeds := redistest.StartCluster(t)
	_, cl := startNodes(t, 3, clusterArgs(seeds[0]+","+seeds[1]+","+seeds[2], "rc:", redistest.Postgres(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, room := range []string{"alpha", "beta"} { // on different shards
		anchor := cl[0].createRoom(room)
		runOrder(ctx, t, cl, cl[:2], room, anchor, 4, 20)
	}
}

// TestClusterOutageInProcess: one node in this process on a test-owned
// Redis; Redis dies and comes back. Sends fail fast, the WebSocket stays
// open and gets every acknowledged message, polls are marked stale, and the
// node shuts down with no goroutine left behind (goleak in TestMain).
func TestClusterOutageInProcess(t *testing.T) {
	srv := redistest.StartServer(t)
	s := startServer(t, func(c *config.Config) {
		c.Redis, c.RedisPrefix, c.RenderBudget, c.Tick = srv.URL(), "ip:", 0, 20*time.Millisecond
	})
	anchor := s.createRoom("o")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, _ := s.attached(ctx, "room=o&cursor=0")
	sendOK := func(text string) uint64 {
		code, ans := s.send("o", anchor, map[string]string{"kind": "chat", "text": text})
		if code != 201 {
			t.Fatalf("send %q: %d %+v", text, code, ans)
		}
		return ans.Seq
	}
	sendOK("before")
	srv.Kill()
	start := time.Now()
	code, ans := s.send("o", anchor, map[string]string{"kind": "chat", "text": "lost"})
	if code != 503 || ans.Error == nil || ans.Error.Code != "unavailable" || time.Since(start) > failFast {
		t.Fatalf("send with Redis down: %d %+v after %v", code, ans, time.Since(start))
	}
	var pa struct {
		Stale bool `json:"stale"`
	}
	if code := s.do("GET", "/api/rooms/o/messages", "", nil, &pa); code != 200 || !pa.Stale {
		t.Fatalf("poll with Redis down: %d stale=%v", code, pa.Stale)
	}
	srv.Start()
	testutil.WaitFor(t, "sends succeed again", 10*time.Second, func() bool {
		code, _ := s.send("o", anchor, map[string]string{"kind": "chat", "text": "after"})
		return code == 201
	})
	last := sendOK("last")
	var got []string
	for seq := uint64(0); seq < last; {
		f, err := w.next(ctx, "batch")
		if err != nil {
			t.Fatalf("websocket after the outage: %v (got %v)", err, got)
		}
		for _, m := range f.Messages {
			if m.Seq != seq+1 {
				t.Fatalf("seq %d after %d", m.Seq, seq)
			}
			seq = m.Seq
			got = append(got, m.Text)
		}
	}
	if got[0] != "before" || got[len(got)-1] != "last" {
		t.Fatalf("delivered %v", got)
	}
}

// TestClusterGapRepair: a message whose notification never arrived (stored
// straight into Redis, as if the publish were lost) is found by the hub when
// the next one arrives ahead of it, with one timeline range read, and the
// viewer gets both in order.
func TestClusterGapRepair(t *testing.T) {
	s, c, prefix := startOnRedis(t)
	anchor := s.createRoom("g")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The hub has loaded the room (first batch) and dispatched seq 1 before
	// seq 2 goes missing: a hub loaded later would read 2 with its window
	// and have no gap to repair.
	w, _ := s.attached(ctx, "room=g&cursor=0")
	if code, _ := s.send("g", anchor, map[string]string{"kind": "chat", "text": "one"}); code != 201 {
		t.Fatal(code)
	}
	f, err := w.next(ctx, "batch")
	if err != nil || len(f.Messages) != 1 || f.Messages[0].Text != "one" {
		t.Fatalf("first message: %+v %v", f, err)
	}
	// Seq 2 is stored without a notification.
	seq, err := c.Do(ctx, c.B().Hincrby().Key(prefix+"{g}:m").Field("@s").Increment(1).Build()).AsInt64()
	if err != nil || seq != 2 {
		t.Fatalf("incr: %d %v", seq, err)
	}
	lost := &message.Message{Seq: 2, ID: "lost", Room: "g", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "two", TS: time.Now().UnixMilli()}
	if err := c.Do(ctx, c.B().Xadd().Key(prefix+"{g}:x").Id("2-0").FieldValue().FieldValue("t", fmt.Sprint(lost.TS)).
		FieldValue("m", string(lost.Encoded())).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	ranges := func() float64 {
		return s.metricSum(t, "roomcast_store_commands_total", func(l string) bool { return l == `op="timeline_range"` })
	}
	before := ranges()
	if code, _ := s.send("g", anchor, map[string]string{"kind": "chat", "text": "three"}); code != 201 {
		t.Fatal(code)
	}
	got := []string{"one"}
	for len(got) < 3 {
		f, err := w.next(ctx, "batch")
		if err != nil {
			t.Fatalf("got %v: %v", got, err)
		}
		for _, m := range f.Messages {
			if m.Seq != uint64(len(got)+1) {
				t.Fatalf("seq %d after %v", m.Seq, got)
			}
			got = append(got, m.Text)
		}
	}
	if got[1] != "two" {
		t.Fatalf("delivered %v", got)
	}
	if n := ranges() - before; n != 1 {
		t.Fatalf("gap repaired with %.0f range reads, want 1", n)
	}
}
