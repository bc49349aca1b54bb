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
	"roomcast/internal/redistest"
)

// TestGroupCommit64Senders is issue 14's group-commit acceptance: 64
// concurrent senders spread over the nodes send into one room; every send
// gets its own ack with its own seq, each sender's seqs follow its sending
// order, the seqs are exactly 1..N, and WebSocket readers on every node see
// them gap-free in that order. In cluster mode the sends share store
// appends (fewer Lua calls than messages is logged, not asserted: batching
// depends on timing).
func TestGroupCommit64Senders(t *testing.T) {
	t.Run("Memory", func(t *testing.T) {
		s := startServer(t, func(c *config.Config) { c.RenderBudget, c.RateLimit = 0, "0" })
		runGroupCommit(t, []*server{s})
	})
	t.Run("RedisThreeNodes", func(t *testing.T) {
		c := redistest.Client(t)
		prefix := redistest.Prefix(t, c)
		db := redistest.Postgres(t)
		var nodes []*server
		for range 3 {
			nodes = append(nodes, startServer(t, func(cfg *config.Config) {
				cfg.Redis, cfg.RedisPrefix, cfg.DB, cfg.RenderBudget, cfg.RateLimit = "redis://"+redistest.RedisAddr+"/0", prefix, db, 0, "0"
			}))
		}
		runGroupCommit(t, nodes)
		var calls, msgs float64
		for _, s := range nodes {
			calls += s.metricSum(t, "roomcast_store_commands_total", func(l string) bool { return l == `op="timeline_append"` })
			msgs += s.metricSum(t, "roomcast_messages_in_total", nil)
		}
		t.Logf("%.0f messages stored in %.0f append calls", msgs, calls)
		// The adaptive limit of the busy room is in /metrics (issue 14).
		limit := 0.0
		for _, s := range nodes {
			limit += s.metricSum(t, "roomcast_commit_batch_limit", func(l string) bool { return l == `room="gc"` })
		}
		if limit <= 0 {
			t.Fatal("no roomcast_commit_batch_limit{room=\"gc\"} on any node")
		}
	})
}

func runGroupCommit(t *testing.T, nodes []*server) {
	const senders, each = 64, 8
	room := "gc"
	nodes[0].createRoom(room)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	total := uint64(senders * each)
	allSent := make(chan struct{})
	var maxSeq uint64
	finished := func(last uint64) bool {
		select {
		case <-allSent:
			return last >= maxSeq
		default:
			return false
		}
	}
	var readers []*seen
	var rwg sync.WaitGroup
	for i, s := range nodes {
		r := &seen{name: fmt.Sprint("ws", i)}
		readers = append(readers, r)
		rwg.Add(1)
		go func() { defer rwg.Done(); readWS(ctx, r, room, []*server{s}, finished) }()
	}
	type ack struct {
		Seq uint64 `json:"seq"`
		ID  string `json:"id"`
	}
	acked := make([][]ack, senders)
	var wg sync.WaitGroup
	errc := make(chan error, senders)
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := nodes[w%len(nodes)]
			tok := s.token(fmt.Sprint("gc-", w), auth.RoleViewer, 5)
			for i := range each {
				code, raw := s.request(ctx, "POST", "/api/rooms/"+room+"/messages", tok, map[string]string{"kind": "chat", "text": fmt.Sprint(w, "-", i)})
				var a ack
				if code != 201 || json.Unmarshal(raw, &a) != nil || a.Seq == 0 {
					errc <- fmt.Errorf("sender %d message %d: %d %s", w, i, code, raw)
					return
				}
				acked[w] = append(acked[w], a)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for _, as := range acked {
		for _, a := range as {
			maxSeq = max(maxSeq, a.Seq)
		}
	}
	close(allSent)
	for err := range errc {
		cancel()
		rwg.Wait()
		t.Fatal(err)
	}
	owner := map[uint64]string{}
	ids := acks{ids: map[uint64]string{}}
	for w, as := range acked {
		for i, a := range as {
			if prev, dup := owner[a.Seq]; dup {
				t.Fatalf("seq %d acknowledged to %s and to sender %d", a.Seq, prev, w)
			}
			owner[a.Seq] = fmt.Sprint("sender ", w)
			ids.record(a.Seq, a.ID)
			if i > 0 && a.Seq <= as[i-1].Seq {
				t.Fatalf("sender %d: message %d got seq %d after seq %d", w, i, a.Seq, as[i-1].Seq)
			}
		}
	}
	if uint64(len(owner)) != total {
		t.Fatalf("%d distinct seqs for %d sends", len(owner), total)
	}
	rwg.Wait()
	checkReaders(t, readers, &ids, ids.max.Load())
}
