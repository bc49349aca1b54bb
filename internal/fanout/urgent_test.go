package fanout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/testutil"
)

// TestMustDeliverGoesAtOnce (issue 12: the quiz reveal's p99): a
// must-deliver message does not wait for the merge window — not Tick, not
// a big room's BigTick. Both are an hour here, so only the wake-up can
// deliver; the chat that was pending before it goes in the same batch, in
// order.
func TestMustDeliverGoesAtOnce(t *testing.T) {
	r := newRig(t, Config{Tick: time.Hour, BigTick: 2 * time.Hour, BigRoom: 1})
	ctx := context.Background()
	viewer := &countSink{keep: true}
	if err := r.node.Attach(ctx, &Conn{Sink: viewer, Room: "q", Session: "v", Member: presence.Member{Session: "v"}}, 0, true); err != nil {
		t.Fatal(err)
	}
	r.append(t, "q", message.KindChat, 0)
	r.append(t, "q", message.KindQuizReveal, 0)
	testutil.WaitFor(t, "the reveal to be written", 30*time.Second, func() bool { return len(viewer.seqs(t)) >= 2 })
	if got := fmt.Sprint(viewer.seqs(t)); got != "[1 2]" {
		t.Fatalf("viewer got seqs %s, want [1 2]", got)
	}
	// A chat alone waits for the window again (the urgency went with the batch).
	r.append(t, "q", message.KindChat, 0)
	r.append(t, "q", message.KindKick, 0)
	testutil.WaitFor(t, "the kick to be written", 30*time.Second, func() bool { return len(viewer.seqs(t)) >= 4 })
	if got := fmt.Sprint(viewer.seqs(t)); got != "[1 2 3 4]" {
		t.Fatalf("viewer got seqs %s, want [1 2 3 4]", got)
	}
}
