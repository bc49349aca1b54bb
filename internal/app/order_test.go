package app

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/config"
)

// seqChecker verifies one reader saw every seq from 1 with no gap,
// duplicate or reordering.
type seqChecker struct {
	name string
	last uint64
	err  error
}

func (c *seqChecker) see(seq uint64) {
	if c.err != nil {
		return
	}
	if seq != c.last+1 {
		c.err = fmt.Errorf("%s: got seq %d after %d", c.name, seq, c.last)
		return
	}
	c.last = seq
}

// TestConcurrentWritersAndReaders is R11 end to end: 16 concurrent writers
// (HTTP and WebSocket) and 50 readers (25 polling, 25 WebSocket) with an
// unlimited render budget; every reader must see seq 1..N in order.
func TestConcurrentWritersAndReaders(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RenderBudget = 0; c.Tick = 20 * time.Millisecond })
	s.createRoom("hot")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	const writers, perWriter, pollers, wsReaders = 16, 25, 25, 25
	var maxAcked atomic.Uint64
	writersDone := make(chan struct{})

	var wg sync.WaitGroup
	checkers := make([]*seqChecker, 0, pollers+wsReaders)
	var mu sync.Mutex
	addChecker := func(name string) *seqChecker {
		c := &seqChecker{name: name}
		mu.Lock()
		checkers = append(checkers, c)
		mu.Unlock()
		return c
	}
	// done reports whether a reader has caught up with every acked message.
	caughtUp := func(c *seqChecker) bool {
		select {
		case <-writersDone:
			return c.last >= maxAcked.Load()
		default:
			return false
		}
	}

	ready := sync.WaitGroup{}
	for i := 0; i < wsReaders; i++ {
		ready.Add(1)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			chk := addChecker(fmt.Sprintf("ws%d", i))
			c, _, err := s.dial(ctx, "room=hot&cursor=0")
			ready.Done()
			if err != nil {
				chk.err = err
				return
			}
			defer c.close()
			// A blocking read (a read deadline would close the connection):
			// the wake-up message sent after the writers ends the last one.
			for !caughtUp(chk) && chk.err == nil {
				f, err := c.read(ctx)
				if err != nil {
					chk.err = err
					return
				}
				for _, m := range f.Messages {
					chk.see(m.Seq)
				}
			}
		}(i)
	}
	for i := 0; i < pollers; i++ {
		ready.Add(1)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			chk := addChecker(fmt.Sprintf("poll%d", i))
			ready.Done()
			var cursor uint64
			for !caughtUp(chk) && chk.err == nil && ctx.Err() == nil {
				a := s.poll("hot", &cursor, 100)
				if a.Reset {
					chk.err = fmt.Errorf("poll%d: unexpected reset at cursor %d", i, cursor)
					return
				}
				for _, m := range a.Messages {
					chk.see(m.Seq)
				}
				cursor = a.Cursor
				time.Sleep(30 * time.Millisecond)
			}
		}(i)
	}
	ready.Wait()

	var wwg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wwg.Add(1)
		go func(w int) {
			defer wwg.Done()
			tok := s.token(fmt.Sprintf("writer%d", w), auth.RoleViewer, w)
			if w%2 == 0 { // half the writers send over the WebSocket
				c, _, err := s.dial(ctx, "room=hot&token="+tok)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.close()
				for i := 0; i < perWriter; i++ {
					id := fmt.Sprintf("w%d-%d", w, i)
					if err := c.write(ctx, map[string]any{"type": "send", "id": id, "kind": "chat", "text": id}); err != nil {
						t.Error(err)
						return
					}
					f, err := c.next(ctx, "ack")
					if err != nil || f.ID != id || f.Seq == 0 {
						t.Errorf("ws ack for %s: %+v %v", id, f, err)
						return
					}
					setMax(&maxAcked, f.Seq)
				}
				return
			}
			for i := 0; i < perWriter; i++ {
				code, a := s.send("hot", tok, map[string]string{"kind": "chat", "text": fmt.Sprintf("w%d-%d", w, i)})
				if code != 201 {
					t.Errorf("send: %d %+v", code, a)
					return
				}
				setMax(&maxAcked, a.Seq)
			}
		}(w)
	}
	wwg.Wait()
	close(writersDone)
	// Wakes WebSocket readers blocked in a read after they saw everything.
	if code, a := s.send("hot", s.token("waker", auth.RoleViewer, 1), map[string]string{"kind": "chat", "text": "wake"}); code != 201 {
		t.Errorf("wake-up send: %d %+v", code, a)
	}
	wg.Wait()
	if maxAcked.Load() < writers*perWriter {
		t.Fatalf("only %d acked", maxAcked.Load())
	}
	for _, c := range checkers {
		if c.err != nil {
			t.Error(c.err)
		} else if c.last < maxAcked.Load() {
			t.Errorf("%s stopped at %d of %d", c.name, c.last, maxAcked.Load())
		}
	}
}

func setMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// TestResumeAfterReconnect: a WebSocket client that reconnects with its
// cursor gets exactly what it missed.
func TestResumeAfterReconnect(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RenderBudget = 0; c.Tick = 20 * time.Millisecond })
	s.createRoom("r")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok := s.token("sender", auth.RoleViewer, 1)
	c, _, err := s.dial(ctx, "room=r&cursor=0")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		s.send("r", tok, map[string]string{"kind": "chat", "text": fmt.Sprint("before", i)})
	}
	chk := &seqChecker{name: "resume"}
	for chk.last < 5 {
		f, err := c.next(ctx, "batch")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range f.Messages {
			chk.see(m.Seq)
		}
	}
	cursor := chk.last
	c.close()
	var last uint64
	for i := 0; i < 7; i++ {
		_, a := s.send("r", tok, map[string]string{"kind": "chat", "text": fmt.Sprint("missed", i)})
		last = a.Seq
	}
	c, _, err = s.dial(ctx, fmt.Sprintf("room=r&cursor=%d", cursor))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for chk.last < last && chk.err == nil {
		f, err := c.next(ctx, "batch")
		if err != nil {
			t.Fatal(err)
		}
		if f.Reset {
			t.Fatal("resume within the staleness limit must not reset")
		}
		for _, m := range f.Messages {
			chk.see(m.Seq)
		}
	}
	if chk.err != nil {
		t.Fatal(chk.err)
	}
	// Polling resumes the same way.
	cur := cursor
	a := s.poll("r", &cur, 100)
	if a.Reset || len(a.Messages) < 7 || a.Messages[0].Seq != cursor+1 {
		t.Fatalf("poll resume: %+v", a)
	}
}

// TestStalenessReset: a cursor further behind than the staleness limit gets
// the latest messages and reset:true (R10).
func TestStalenessReset(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Staleness = 300 * time.Millisecond; c.WarmWindow = 200 * time.Millisecond })
	s.createRoom("st")
	tok := s.token("u", auth.RoleViewer, 1)
	for i := 0; i < 5; i++ {
		s.send("st", tok, map[string]string{"kind": "chat", "text": fmt.Sprint("old", i)})
	}
	time.Sleep(500 * time.Millisecond)
	_, a := s.send("st", tok, map[string]string{"kind": "chat", "text": "fresh"})
	var cursor uint64 = 1
	p := s.poll("st", &cursor, 15)
	if !p.Reset || p.Cursor != a.Seq {
		t.Fatalf("want reset to %d, got %+v", a.Seq, p)
	}
	for _, m := range p.Messages {
		if m.Text != "fresh" && m.Kind == "chat" {
			t.Fatalf("reset answer holds stale message %+v", m)
		}
	}
	// A cursor from the future (another server life) resets too.
	cursor = 10_000
	if p := s.poll("st", &cursor, 15); !p.Reset {
		t.Fatalf("future cursor: %+v", p)
	}
	// No cursor: warm start and the current cursor.
	if p := s.poll("st", nil, 15); p.Cursor != a.Seq || p.Reset {
		t.Fatalf("warm start: %+v", p)
	}
}
