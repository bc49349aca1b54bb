package fanout

import (
	"context"
	"errors"
	"testing"
	"time"

	"roomcast/internal/bus"
	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/testutil"
)

// firstSink runs first when it is sent its first payload, then counts like
// countSink; err (when set) fails every Send.
type firstSink struct {
	countSink
	first func()
	err   error
}

func (s *firstSink) Send(p *Payload) error {
	if s.first != nil {
		s.first()
		s.first = nil
	}
	if s.err != nil {
		return s.err
	}
	return s.countSink.Send(p)
}

func (n *Node) indexed(c *Conn, user string) bool {
	n.usersMu.Lock()
	defer n.usersMu.Unlock()
	_, ok := n.users[user][c]
	return ok
}

// TestUserIndexBeforeFirstBatch: a connection is in the user index before
// its first batch can reach the client, so a user-scoped message the
// client causes on seeing that batch reaches it (it was lost when the
// index was written after the join); a join that fails leaves no entry,
// and a detach removes it.
func TestUserIndexBeforeFirstBatch(t *testing.T) {
	r := newRig(t, Config{Tick: time.Hour})
	ctx := context.Background()
	s := &firstSink{countSink: countSink{keep: true}}
	c := &Conn{Sink: s, Room: "u", Session: "a1", Member: presence.Member{Session: "a1", UserID: "alice"}}
	seen := false
	s.first = func() { seen = r.node.indexed(c, "alice") }
	if err := r.node.Attach(ctx, c, 0, false); err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Fatal("the first batch went out before the connection was in the user index")
	}
	m := &message.Message{ID: "p", Room: "u", Kind: message.KindNotice, Scope: message.ScopeUser, To: "alice", Text: "for alice"}
	m.Seal()
	if err := r.bus.Publish(ctx, bus.Users, bus.Event{Type: bus.EvUserMsg, User: "alice", Room: "u", Msg: m}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "alice's message", 30*time.Second, func() bool { // the bus delivers on its own goroutine; each tick takes what has been queued
		r.node.tick(time.Now(), false, false)
		for _, txt := range s.texts(t) {
			if txt == "for alice" {
				return true
			}
		}
		return false
	})
	r.node.Detach(c)
	if r.node.indexed(c, "alice") {
		t.Fatal("a detached connection is still in the user index")
	}

	bad := &firstSink{err: errors.New("gone")}
	b := &Conn{Sink: bad, Room: "u", Session: "b1", Member: presence.Member{Session: "b1", UserID: "bob"}}
	if err := r.node.Attach(ctx, b, 0, false); err == nil {
		t.Fatal("a join whose first batch fails must fail")
	}
	if r.node.indexed(b, "bob") {
		t.Fatal("a failed join left its connection in the user index")
	}
}
