package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// TestClusterThreeNodes is issue 5's acceptance run on the machine's Redis
// (a key prefix of its own) and PostgreSQL (a database of its own): three
// roomcast processes; writers on two, pollers and WebSocket readers on all
// three see the same gap-free order; online counts agree across nodes
// within 3 s; user scope and broadcast cross nodes; a poll of a hot room
// costs no Redis command; a node killed mid-run loses its readers to the
// others, which resume by cursor without a gap, and its viewers leave the
// counts within seconds.
func TestClusterThreeNodes(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	nodes, cl := startNodes(t, 3, clusterArgs("redis://"+redistest.RedisAddr+"/0", prefix, redistest.Postgres(t)))
	a, b, cc := cl[0], cl[1], cl[2]
	anchor := a.createRoom("hot")
	b.createRoom("side")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	t.Run("OrderAcrossNodes", func(t *testing.T) {
		runOrder(ctx, t, cl, []*server{a, b}, "hot", anchor, 8, 25)
	})

	t.Run("OnlineAcrossNodes", func(t *testing.T) {
		// 2 WebSocket viewers on each node; every node must report 6.
		var conns []*wsClient
		for _, s := range cl {
			for i := 0; i < 2; i++ {
				w, _, err := s.dial(ctx, "room=side")
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, w)
			}
		}
		defer func() {
			for _, w := range conns {
				w.close()
			}
		}()
		start := time.Now()
		testutil.WaitFor(t, "every node counts 6 viewers", 30*time.Second, func() bool {
			for _, s := range cl {
				var v struct{ Online int }
				if s.do("GET", "/api/rooms/side", "", nil, &v); v.Online != 6 {
					return false
				}
			}
			return true
		})
		t.Logf("online count consistent across 3 nodes after %v", time.Since(start).Round(10*time.Millisecond))
	})

	t.Run("UserScopeAndBroadcast", func(t *testing.T) {
		alice := cc.token("alice", auth.RoleViewer, 1)
		// Attached (their first batch read) before anything is sent: a
		// user-scoped message has no room seq, so one sent before alice's
		// connection joins is not replayed to it (it waits in her inbox).
		wAlice, _ := cc.attached(ctx, "room=hot&token="+alice)
		defer wAlice.close()
		wOther, _ := a.attached(ctx, "room=side")
		defer wOther.close() // now: the next subtest counts side's viewers
		if code, ans := b.send("hot", anchor, map[string]any{"kind": "notice", "text": "for alice", "scope": "user", "to": "alice"}); code != 201 {
			t.Fatalf("user-scoped send: %d %+v", code, ans)
		}
		if code := a.do("POST", "/api/broadcast", testAdminKey, map[string]any{"kind": "system", "text": "to all"}, nil); code != 201 {
			t.Fatalf("broadcast: %d", code)
		}
		want := map[string]bool{"for alice": false, "to all": false}
		waitTexts(ctx, t, wAlice, want)
		wantSide := map[string]bool{"to all": false}
		waitTexts(ctx, t, wOther, wantSide)

		// A kick on A closes alice's connection on C and bars her on B.
		if code := a.do("POST", "/api/rooms/hot/kick", anchor, map[string]any{"user": "alice", "duration_s": 60}, nil); code != 200 {
			t.Fatalf("kick: %d", code)
		}
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		for {
			if _, err := wAlice.read(rctx); err != nil {
				if !strings.Contains(err.Error(), "4003") {
					t.Fatalf("alice's connection ended with %v, want 4003 kicked", err)
				}
				break
			}
		}
		// B's copy of the room's kicks follows within the bus's latency
		// (issue 14: a send reads no Redis for it).
		testutil.WaitFor(t, "B to refuse the kicked user", 5*time.Second, func() bool {
			code, ans := b.send("hot", alice, map[string]string{"kind": "chat", "text": "back"})
			return code == 403 && ans.Error != nil && ans.Error.Code == "kicked"
		})
	})

	t.Run("PollCostsNoRedisCommand", func(t *testing.T) {
		cur := uint64(0)
		cc.poll("hot", &cur, 10) // the hub exists (and subscribed) from here on
		before := cc.metric(t, "roomcast_store_poll_commands_total")
		total := cc.metricSum(t, "roomcast_store_commands_total", nil)
		start := time.Now()
		const polls = 300
		for i := 0; i < polls; i++ {
			code, _ := cc.request(ctx, "GET", fmt.Sprintf("/api/rooms/hot/messages?cursor=%d&sid=p%d", 100+i%50, i%20), "", nil)
			if code != 200 {
				t.Fatalf("poll: %d", code)
			}
		}
		elapsed := time.Since(start)
		if d := cc.metric(t, "roomcast_store_poll_commands_total") - before; d != 0 {
			t.Fatalf("%d polls of a hot room cost %.0f Redis commands", polls, d)
		}
		// Only the per-second background work (presence flush, counts, pings) may run meanwhile.
		all := cc.metricSum(t, "roomcast_store_commands_total", nil) - total
		if bound := 20 * (elapsed.Seconds() + 1); all > bound {
			t.Fatalf("%.0f Redis commands during %d polls in %v (bound %.0f)", all, polls, elapsed, bound)
		}
	})

	t.Run("NodeKilledReadersResume", func(t *testing.T) {
		// Viewers of "side" on every node, to see C's leave the counts.
		for _, s := range cl {
			for i := 0; i < 2; i++ {
				w, _, err := s.dial(ctx, "room=side")
				if err != nil {
					t.Fatal(err)
				}
				defer w.close()
			}
		}
		testutil.WaitFor(t, "6 viewers", 30*time.Second, func() bool {
			var v struct{ Online int }
			a.do("GET", "/api/rooms/side", "", nil, &v)
			return v.Online == 6
		})
		// Readers on C fail over to A and B; C dies while writers keep going.
		acked := newAcks()
		var readers []*seen
		var wg sync.WaitGroup
		var writersDone sync.WaitGroup
		finished := make(chan struct{})
		from := headOf(t, a, "hot")
		done := func(last uint64) bool {
			select {
			case <-finished:
				return last >= acked.max.Load()
			default:
				return false
			}
		}
		for i := 0; i < 3; i++ {
			for _, kind := range []string{"ws", "poll"} {
				r := &seen{name: fmt.Sprintf("%s-c%d", kind, i), ids: make([]string, from)}
				readers = append(readers, r)
				wg.Add(1)
				go func(kind string) {
					defer wg.Done()
					order := []*server{cc, a, b}
					if kind == "ws" {
						readWS(ctx, r, "hot", order, done)
					} else {
						readPoll(ctx, r, "hot", order, done)
					}
				}(kind)
			}
		}
		errc := make(chan error, 16)
		for w := 0; w < 4; w++ {
			writersDone.Add(1)
			go func(w int) {
				defer writersDone.Done()
				s := []*server{a, b}[w%2]
				write(ctx, s, s.token(fmt.Sprint("k", w), auth.RoleViewer, 5), "hot", 40, acked, 15*time.Millisecond, errc)
			}(w)
		}
		testutil.WaitFor(t, "traffic before the kill", 30*time.Second, func() bool { return acked.max.Load() >= from+20 })
		nodes[2].Kill()
		writersDone.Wait()
		close(finished)
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		for _, r := range readers {
			r.mu.Lock()
			r.ids = r.ids[:len(r.ids):len(r.ids)]
			r.mu.Unlock()
		}
		checkTail(t, readers, acked, from)
		t.Logf("node C killed mid-run: its %d readers resumed on A and B; seq %d..%d gap-free", len(readers), from+1, acked.max.Load())

		// C's viewers of "side" (2) left the counts with C.
		testutil.WaitFor(t, "the dead node's viewers leave the count", 10*time.Second, func() bool {
			var v struct{ Online int }
			a.do("GET", "/api/rooms/side", "", nil, &v)
			return v.Online == 4
		})
	})
}

// runOrder: writers (perNode per writer node) send count messages each into
// room while 2 WebSocket readers and 2 pollers per node follow it.
func runOrder(ctx context.Context, t *testing.T, all, writers []*server, room, anchor string, perNode, count int) {
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
	var readers []*seen
	var wg sync.WaitGroup
	for i, s := range all {
		for j := 0; j < 2; j++ {
			ws := &seen{name: fmt.Sprintf("ws-n%d-%d", i, j)}
			pl := &seen{name: fmt.Sprintf("poll-n%d-%d", i, j)}
			readers = append(readers, ws, pl)
			wg.Add(2)
			go func(s *server) { defer wg.Done(); readWS(ctx, ws, room, []*server{s}, done) }(s)
			go func(s *server) { defer wg.Done(); readPoll(ctx, pl, room, []*server{s}, done) }(s)
		}
	}
	attachedEverywhere(t, all[0], room, len(readers)) // readers attached before the first message
	errc := make(chan error, len(writers)*perNode)
	var ww sync.WaitGroup
	for i, s := range writers {
		for w := 0; w < perNode; w++ {
			ww.Add(1)
			go func(s *server, user string) {
				defer ww.Done()
				write(ctx, s, s.token(user, auth.RoleViewer, 5), room, count, acked, 0, errc)
			}(s, fmt.Sprintf("w%d-%d", i, w))
		}
	}
	ww.Wait()
	close(finished)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if got, want := len(acked.ids), len(writers)*perNode*count; got != want {
		t.Fatalf("%d of %d sends acknowledged", got, want)
	}
	checkReaders(t, readers, acked, acked.max.Load())
	t.Logf("%d readers on %d nodes saw the same %d messages (%d acknowledged sends from %d nodes)",
		len(readers), len(all), acked.max.Load(), len(acked.ids), len(writers))
}

// checkTail is checkReaders for readers that started at seq from+1.
func checkTail(t *testing.T, readers []*seen, a *acks, from uint64) {
	t.Helper()
	for _, r := range readers {
		r.mu.Lock()
		if r.err == nil {
			for i := uint64(0); i < from; i++ {
				r.ids[i] = "" // before the run: not compared
			}
		}
		r.mu.Unlock()
	}
	checkReaders(t, readers, a, a.max.Load())
}

// headOf returns room's last seq as a fresh poll reports it.
func headOf(t *testing.T, s *server, room string) uint64 {
	t.Helper()
	a := s.poll(room, nil, 1)
	return a.Cursor
}

// waitTexts reads frames until every text in want arrived.
func waitTexts(ctx context.Context, t *testing.T, w *wsClient, want map[string]bool) {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a bound for a loaded machine, not a speed check
	defer cancel()
	for missing := len(want); missing > 0; {
		f, err := w.read(rctx)
		if err != nil {
			t.Fatalf("still waiting for %v: %v", want, err)
		}
		for _, m := range f.Messages {
			if got, ok := want[m.Text]; ok && !got {
				want[m.Text] = true
				missing--
			}
		}
	}
}
