package fanout

import (
	"context"
	"testing"
	"time"

	"roomcast/internal/message"
)

// Pollers asking the same room the same question in the same state share
// one answer (issue 14); a new message, another cursor or another limit is
// a different answer, and a first poll (no cursor) is never shared.
func TestPollersShareOnePage(t *testing.T) {
	r := newRig(t, Config{Tick: time.Hour, Budget: 20})
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		r.append(t, "hot", message.KindChat, 100+i%7)
	}
	q := PollQuery{Cursor: 20, HasCursor: true, Limit: 15}
	a1, err := r.node.Poll(ctx, "hot", q)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := r.node.Poll(ctx, "hot", q)
	if a1.Page == nil || a1.Page != a2.Page || len(a2.Messages) != len(a1.Messages) || a2.Cursor != a1.Cursor {
		t.Fatalf("two identical polls did not share a page: %p %p", a1.Page, a2.Page)
	}
	if other, _ := r.node.Poll(ctx, "hot", PollQuery{Cursor: 21, HasCursor: true, Limit: 15}); other.Page == a1.Page {
		t.Fatal("another cursor got the same page")
	}
	if other, _ := r.node.Poll(ctx, "hot", PollQuery{Cursor: 20, HasCursor: true, Limit: 10}); other.Page == a1.Page || len(other.Messages) > 10 {
		t.Fatal("another limit got the same page")
	}
	if first, _ := r.node.Poll(ctx, "hot", PollQuery{Limit: 15}); first.Page != nil {
		t.Fatal("a first poll was shared")
	}
	r.append(t, "hot", message.KindChat, 500)
	a3, _ := r.node.Poll(ctx, "hot", q)
	if a3.Page == a1.Page {
		t.Fatal("a page outlived a new message")
	}
	found := false
	for _, m := range a3.Messages {
		found = found || m.Priority == 500
	}
	if !found {
		t.Fatal("the new top-priority message is missing from the next answer")
	}
}
