package app

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// pollQuery polls with a raw query string and fails on anything but 200.
func (s *server) pollQuery(room, query string) pollAnswer {
	s.t.Helper()
	var a pollAnswer
	if code := s.do("GET", "/api/rooms/"+room+"/messages?"+query, "", nil, &a); code != 200 {
		s.t.Fatalf("poll %s: %d", query, code)
	}
	return a
}

// startMode starts a server in memory mode or on the machine's Redis under
// a fresh prefix, in seq order (no render budget).
func startMode(t *testing.T, mode string) *server {
	return startServer(t, func(c *config.Config) {
		c.RenderBudget = 0
		if mode == "redis" {
			c.Redis, c.RedisPrefix = "redis://"+redistest.RedisAddr+"/0", redistest.Prefix(t, redistest.Client(t))
		}
	})
}

// startOnRedis starts a server on the machine's Redis under a fresh prefix
// (seq order, 20 ms ticks); it returns a client of that Redis and the prefix.
func startOnRedis(t *testing.T) (*server, rueidis.Client, string) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	s := startServer(t, func(cfg *config.Config) {
		cfg.Redis, cfg.RedisPrefix, cfg.RenderBudget, cfg.Tick = "redis://"+redistest.RedisAddr+"/0", prefix, 0, 20*time.Millisecond
	})
	return s, c, prefix
}

// sendSeen sends n chats (text1…textN) into a room with no messages yet and
// returns the batch in which viewer w received the last.
func (s *server) sendSeen(ctx context.Context, w *wsClient, room, tok, text string, n int) frame {
	s.t.Helper()
	for i := 1; i <= n; i++ {
		if code, a := s.send(room, tok, map[string]string{"kind": "chat", "text": fmt.Sprint(text, i)}); code != 201 {
			s.t.Fatalf("send: %d %+v", code, a)
		}
	}
	var f frame
	for f.Cursor < uint64(n) {
		var err error
		if f, err = w.next(ctx, "batch"); err != nil {
			s.t.Fatal(err)
		}
	}
	return f
}

// TestEpochCursors (issue 8): polls and WebSocket batches carry the room's
// epoch beside the cursor; a cursor sent back with its epoch resumes, one
// with another epoch resets (with the current epoch), never a silent gap.
func TestEpochCursors(t *testing.T) {
	for _, mode := range []string{"memory", "redis"} {
		t.Run(mode, func(t *testing.T) {
			s := startMode(t, mode)
			anchor := s.createRoom("e")
			if a := s.pollQuery("e", "cursor=0&epoch="); a.Epoch != "" || a.Reset || a.Cursor != 0 {
				t.Fatalf("a room without messages: %+v", a)
			}
			for i := 1; i <= 3; i++ {
				if code, _ := s.send("e", anchor, map[string]string{"kind": "chat", "text": fmt.Sprint("m", i)}); code != 201 {
					t.Fatalf("send: %d", code)
				}
			}
			var first pollAnswer
			testutil.WaitFor(t, "the node to hold the 3 messages", 10*time.Second, func() bool {
				first = s.pollQuery("e", "")
				return first.Cursor == 3
			})
			epoch := first.Epoch
			if len(epoch) < 8 || first.Cursor != 3 {
				t.Fatalf("first poll: cursor %d epoch %q", first.Cursor, epoch)
			}
			// Cursor 0 of "no epoch yet" is the start of every epoch.
			if a := s.pollQuery("e", "cursor=0&epoch="); a.Reset || len(a.Messages) != 3 || a.Epoch != epoch {
				t.Fatalf("cursor 0: %+v", a)
			}
			if a := s.pollQuery("e", "cursor=1&epoch="+epoch); a.Reset || len(a.Messages) != 2 || a.Messages[0].Seq != 2 || a.Epoch != epoch {
				t.Fatalf("resume in the same epoch: %+v", a)
			}
			if a := s.pollQuery("e", "cursor=1&epoch=another"); !a.Reset || a.Epoch != epoch || a.Cursor != 3 {
				t.Fatalf("cursor of another epoch: %+v, want a reset into %q", a, epoch)
			}
			if a := s.pollQuery("e", "cursor=1"); a.Reset || len(a.Messages) != 2 {
				t.Fatalf("cursor without an epoch (older clients): %+v", a)
			}
			if code := s.do("GET", "/api/rooms/e/messages?cursor=1&epoch="+strings.Repeat("x", 65), "", nil, nil); code != 400 {
				t.Fatalf("a 65-byte epoch: %d, want 400", code)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for _, c := range []struct {
				query string
				reset bool
				seqs  int
			}{{"cursor=1&epoch=" + url.QueryEscape(epoch), false, 2}, {"cursor=1&epoch=gone", true, -1}} {
				w, _, err := s.dial(ctx, "room=e&"+c.query)
				if err != nil {
					t.Fatal(err)
				}
				// The first batch carries what the hub has dispatched; what it
				// holds but has not dispatched yet (its tick is late on a busy
				// machine) comes in the next batch, so read on until the
				// cursor reaches 3: no reset after the first batch, no gap, no
				// duplicate. Enter messages (this test's own viewers) may
				// follow the chat.
				f, err := w.next(ctx, "batch")
				if err != nil || f.Reset != c.reset || f.Epoch != epoch {
					t.Fatalf("ws %s: first batch %+v (%v)", c.query, f, err)
				}
				var chat []uint64
				for {
					for _, m := range f.Messages {
						if m.Kind == "chat" {
							chat = append(chat, m.Seq)
						}
					}
					if f.Cursor >= 3 {
						break
					}
					if f, err = w.next(ctx, "batch"); err != nil || f.Reset || f.Epoch != epoch {
						t.Fatalf("ws %s: a later batch %+v (%v)", c.query, f, err)
					}
				}
				w.close()
				if c.seqs >= 0 && fmt.Sprint(chat) != "[2 3]" {
					t.Fatalf("ws %s: chat seqs %v up to cursor %d, want [2 3]", c.query, chat, f.Cursor)
				}
			}
		})
	}
}

// TestIdempotentSend (issue 8): a send repeated with the same client_msg_id
// by the same user, over HTTP or the WebSocket, gets the first send's ack
// and is stored once; another user's identical id is its own message.
func TestIdempotentSend(t *testing.T) {
	for _, mode := range []string{"memory", "redis"} {
		t.Run(mode, func(t *testing.T) {
			s := startMode(t, mode)
			s.createRoom("i")
			bob, eve := s.token("bob", auth.RoleViewer, 3), s.token("eve", auth.RoleViewer, 3)
			body := map[string]string{"kind": "chat", "text": "once", "client_msg_id": "c-1"}
			code, a1 := s.send("i", bob, body)
			code2, a2 := s.send("i", bob, body)
			if code != 201 || code2 != 201 || a1.Seq != 1 || a1.Epoch == "" || a2 != a1 {
				t.Fatalf("repeat over HTTP: %d %+v then %d %+v", code, a1, code2, a2)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			w, _, err := s.dial(ctx, "room=i&token="+bob)
			if err != nil {
				t.Fatal(err)
			}
			defer w.close()
			if err := w.write(ctx, map[string]string{"type": "send", "id": "f1", "kind": "chat", "text": "once", "client_msg_id": "c-1"}); err != nil {
				t.Fatal(err)
			}
			ack, err := w.next(ctx, "ack")
			if err != nil || ack.Seq != a1.Seq || ack.ID != "f1" || ack.MsgID != a1.ID {
				t.Fatalf("repeat over the WebSocket: %+v %v, want seq %d", ack, err, a1.Seq)
			}
			if code, a3 := s.send("i", eve, body); code != 201 || a3.Seq != 2 || a3.ID == a1.ID {
				t.Fatalf("another user's same id: %d %+v", code, a3)
			}
			long := map[string]string{"kind": "chat", "text": "x", "client_msg_id": strings.Repeat("x", 65)}
			if code, a := s.send("i", bob, long); code != 400 || a.Error == nil || a.Error.Code != "bad_request" {
				t.Fatalf("65-byte client_msg_id: %d %+v", code, a)
			}
			// Eve's message reaches this node's window through Redis's
			// pub/sub: wait for it instead of racing it.
			var p pollAnswer
			testutil.Eventually(10*time.Second, func() bool { p = s.pollQuery("i", "cursor=0"); return len(p.Messages) >= 2 })
			if len(p.Messages) != 2 || p.Messages[0].ID != a1.ID {
				t.Fatalf("stored %+v, want the first send once and eve's", p.Messages)
			}
		})
	}
}

// TestEpochChangeDropsCache (issue 8): when Redis loses a room (its keys
// deleted, as a restart without persistence would), the next message starts
// a new epoch at seq 1. The node drops what it cached of the old epoch: a
// connected viewer gets a reset batch in the new epoch, a fresh poll sees
// only the new message, and an old cursor resets instead of skipping.
func TestEpochChangeDropsCache(t *testing.T) {
	s, c, prefix := startOnRedis(t)
	anchor := s.createRoom("l")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, _ := s.attached(ctx, "room=l&cursor=0")
	old := s.sendSeen(ctx, w, "l", anchor, "old", 3)
	if err := c.Do(ctx, c.B().Del().Key(prefix+"{l}:m", prefix+"{l}:s", prefix+"{l}:x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	code, ans := s.send("l", anchor, map[string]string{"kind": "chat", "text": "new"})
	if code != 201 || ans.Seq != 1 {
		t.Fatalf("send after the loss: %d %+v", code, ans)
	}
	f, err := w.next(ctx, "batch")
	if err != nil || !f.Reset || f.Epoch == old.Epoch || f.Epoch == "" || len(f.Messages) != 1 || f.Messages[0].Text != "new" || f.Cursor != 1 {
		t.Fatalf("viewer after the loss: %+v %v (old epoch %q)", f, err, old.Epoch)
	}
	if a := s.pollQuery("l", ""); len(a.Messages) != 1 || a.Messages[0].Text != "new" || a.Epoch != f.Epoch {
		t.Fatalf("fresh poll after the loss: %+v", a)
	}
	if a := s.pollQuery("l", "cursor=3&epoch="+old.Epoch); !a.Reset || a.Epoch != f.Epoch || a.Cursor != 1 {
		t.Fatalf("old cursor after the loss: %+v", a)
	}
}

// TestEpochSeqReuse (issue 8): a failover that lost the last writes leaves
// Redis with an older counter in the same epoch (simulated: the counter set
// back from 5 to 2 and entries 3–5 deleted). The next append reuses seq 3.
// The node that holds the first seq 3 sees the reuse and rotates the room's
// epoch: its viewer gets a reset into the new epoch, and a cursor of the
// old epoch resets instead of skipping the new seqs 3–5.
func TestEpochSeqReuse(t *testing.T) {
	s, c, prefix := startOnRedis(t)
	anchor := s.createRoom("f")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, _ := s.attached(ctx, "room=f&cursor=0")
	old := s.sendSeen(ctx, w, "f", anchor, "before", 5)
	if err := c.Do(ctx, c.B().Hset().Key(prefix+"{f}:m").FieldValue().FieldValue("@s", "2").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Xdel().Key(prefix+"{f}:x").Id("3-0", "4-0", "5-0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Arbitrary("XSETID").Keys(prefix+"{f}:x").Args("2-0").Build()).Error(); err != nil {
		t.Fatal(err) // the stream as the replica had it: last id 2-0
	}
	if code, a := s.send("f", anchor, map[string]string{"kind": "chat", "text": "after"}); code != 201 || a.Seq != 3 || a.Epoch != old.Epoch {
		t.Fatalf("send after the lost writes: %d %+v (the store reuses seq 3 of epoch %q)", code, a, old.Epoch)
	}
	f, err := w.next(ctx, "batch")
	if err != nil || !f.Reset || f.Epoch == old.Epoch || f.Cursor != 3 || len(f.Messages) == 0 || f.Messages[len(f.Messages)-1].Text != "after" {
		t.Fatalf("viewer after the reuse: %+v %v (old epoch %q)", f, err, old.Epoch)
	}
	if a := s.pollQuery("f", "cursor=5&epoch="+old.Epoch); !a.Reset || a.Epoch != f.Epoch {
		t.Fatalf("old cursor after the reuse: %+v", a)
	}
	if code, a := s.send("f", anchor, map[string]string{"kind": "chat", "text": "next"}); code != 201 || a.Seq != 4 || a.Epoch != f.Epoch {
		t.Fatalf("send in the rotated epoch: %d %+v", code, a)
	}
}
