package fanout

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"roomcast/internal/bus"
	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/timeline"
)

// lateTimeline is a memory timeline whose next Range, once armed, runs
// after before returning: appends made there reach the hub over the bus
// while the hub's repair read is on its way back, as concurrent sends do.
type lateTimeline struct {
	*timeline.Memory
	mu    sync.Mutex
	after func()
}

func (l *lateTimeline) Range(ctx context.Context, room string, after uint64, limit int) (timeline.Page, error) {
	p, err := l.Memory.Range(ctx, room, after, limit)
	l.mu.Lock()
	fn := l.after
	l.after = nil
	l.mu.Unlock()
	if fn != nil {
		fn()
	}
	return p, err
}

// TestRepairReadRacingAppendsKeepsEpoch is R11 under a repair read that
// races appends: the hub re-reads its room (here after learning the room's
// first epoch) while more messages arrive over the bus, so when the read
// returns, the window is past the head the read saw. That is not the store
// reusing seqs: the epoch must not rotate and a viewer must get every seq
// once, in order, without a reset.
func TestRepairReadRacingAppendsKeepsEpoch(t *testing.T) {
	b := bus.NewMemory()
	tl := &lateTimeline{}
	tl.Memory = timeline.NewMemory(timeline.Retention{}, busNotify(b))
	n := manualNode(t, tl, b)
	ctx := context.Background()
	send := func() {
		if _, err := tl.Append(ctx, &message.Message{ID: "x", Room: "g", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "hi"}); err != nil {
			t.Error(err)
		}
	}
	viewer := &countSink{keep: true}
	// Attached before the room's first message: the hub starts without an
	// epoch, and the first message makes it re-read the room.
	if err := n.Attach(ctx, &Conn{Sink: viewer, Room: "g", Session: "v", Member: presence.Member{Session: "v"}}, 0, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		send()
	}
	pos, err := tl.Head(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	tl.mu.Lock()
	tl.after = func() { send(); send() } // 4 and 5 arrive while the read of 1..3 returns
	tl.mu.Unlock()
	for i := 0; i < 3; i++ {
		n.tick(time.Now(), false, false)
	}
	send()
	n.tick(time.Now(), false, false)

	if now, err := tl.Head(ctx, "g"); err != nil || now.Epoch != pos.Epoch {
		t.Fatalf("the room's epoch rotated from %q to %q (%v): no seq was reused", pos.Epoch, now.Epoch, err)
	}
	if got := fmt.Sprint(viewer.seqs(t)); got != "[1 2 3 4 5 6]" {
		t.Fatalf("viewer got seqs %s, want [1 2 3 4 5 6]", got)
	}
	viewer.mu.Lock()
	defer viewer.mu.Unlock()
	for _, f := range viewer.frames {
		if strings.Contains(string(f), `"reset":true`) {
			t.Fatalf("viewer was reset: %s", f)
		}
	}
}
