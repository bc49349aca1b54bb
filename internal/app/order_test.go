package app

import (
	"context"
	"encoding/json"
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
// unlimited render budget; every reader must see seq 1..N in order, with
// no gap, duplicate or reset.
//
// It must hold on a loaded machine (2 cores, many builds, -race): the
// staleness limit (R10, tested on its own) and the heartbeat are set far
// beyond any delay the load causes, a send that fails or times out is
// repeated with its client_msg_id (idempotent: it is stored once), and a
// transport error of a poll is retried; nothing waits for a fixed time.
func TestConcurrentWritersAndReaders(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.RenderBudget = 0
		c.Tick = 20 * time.Millisecond
		c.Staleness = -1
		c.Heartbeat = 2 * time.Minute
	})
	s.createRoom("hot")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	// caughtUp reports whether a reader has seen every acked message.
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
					chk.err = fmt.Errorf("ws%d at %d: %w", i, chk.last, err)
					return
				}
				if f.Reset {
					chk.err = fmt.Errorf("ws%d: unexpected reset after %d: %+v", i, chk.last, f)
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
			for !caughtUp(chk) && chk.err == nil {
				a, err := pollOnce(ctx, s, "hot", cursor)
				if ctx.Err() != nil {
					chk.err = fmt.Errorf("poll%d at %d: %w", i, cursor, ctx.Err())
					return
				}
				if a.Reset {
					chk.err = fmt.Errorf("poll%d: unexpected reset at cursor %d", i, cursor)
					return
				}
				if err == nil { // else a transport error under load: ask again
					for _, m := range a.Messages {
						chk.see(m.Seq)
					}
					cursor = a.Cursor
				}
				time.Sleep(30 * time.Millisecond) // a poller's interval, not a wait for a condition
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
					seq, err := wsSendOnce(ctx, c, fmt.Sprintf("w%d-%d", w, i))
					if err != nil {
						t.Error(err)
						return
					}
					setMax(&maxAcked, seq)
				}
				return
			}
			for i := 0; i < perWriter; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				seq, err := httpSendOnce(ctx, s, "hot", tok, id)
				if err != nil {
					t.Error(err)
					return
				}
				setMax(&maxAcked, seq)
			}
		}(w)
	}
	wwg.Wait()
	close(writersDone)
	// Wakes WebSocket readers blocked in a read after they saw everything.
	if _, err := httpSendOnce(ctx, s, "hot", s.token("waker", auth.RoleViewer, 1), "wake"); err != nil {
		t.Error(err)
		cancel() // the readers would wait for it: end them
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

// pollOnce is one poll from cursor that may run in any goroutine: a
// transport error is returned, not fatal.
func pollOnce(ctx context.Context, s *server, room string, cursor uint64) (pollAnswer, error) {
	code, raw := s.request(ctx, "GET", fmt.Sprintf("/api/rooms/%s/messages?limit=100&cursor=%d", room, cursor), "", nil)
	var a pollAnswer
	if code != 200 {
		return a, fmt.Errorf("poll: %d %s", code, raw)
	}
	return a, json.Unmarshal(raw, &a)
}

// httpSendOnce sends chat text with client_msg_id id over HTTP until it is
// acknowledged: a repeat after a failure or a timeout is stored once.
func httpSendOnce(ctx context.Context, s *server, room, tok, id string) (uint64, error) {
	body := map[string]string{"kind": "chat", "text": id, "client_msg_id": id}
	for try := 1; ; try++ {
		code, raw := s.request(ctx, "POST", "/api/rooms/"+room+"/messages", tok, body)
		var a sendAnswer
		if code == 201 && json.Unmarshal(raw, &a) == nil && a.Seq > 0 {
			return a.Seq, nil
		}
		if try == maxSendTries || ctx.Err() != nil || (code >= 400 && code < 500) {
			return 0, fmt.Errorf("send %s (try %d): %d %s (%v)", id, try, code, raw, ctx.Err())
		}
	}
}

// maxSendTries bounds the repeats of one send (a server that keeps
// failing is a failure, not load).
const maxSendTries = 5

// wsSendOnce sends chat text with client_msg_id id over c until it is
// acknowledged: an error frame (e.g. a store timeout under load) is
// answered by repeating the send, which is stored once.
func wsSendOnce(ctx context.Context, c *wsClient, id string) (uint64, error) {
	for try := 1; ; try++ {
		if err := c.write(ctx, map[string]any{"type": "send", "id": id, "kind": "chat", "text": id, "client_msg_id": id}); err != nil {
			return 0, fmt.Errorf("ws send %s: %w", id, err)
		}
		for {
			f, err := c.read(ctx)
			if err != nil {
				return 0, fmt.Errorf("ws send %s: %w", id, err)
			}
			if f.ID != id || (f.Type != "ack" && f.Type != "error") {
				continue // batches and counts
			}
			if f.Type == "ack" && f.Seq > 0 {
				return f.Seq, nil
			}
			if try == maxSendTries || f.Error == nil || f.Error.Code != "unavailable" {
				return 0, fmt.Errorf("ws send %s (try %d): %+v", id, try, f)
			}
			break // repeat it
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
