package fanout

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/testutil"
)

// spreadRig is a big room of n kept sinks on a hand-ticked node whose
// BigTick is 8h: with 4·spreadGroupMin viewers its writes spread over 4
// groups, 2h apart.
func spreadRig(t *testing.T, n int) (*rig, []*countSink) {
	r := newRig(t, Config{Tick: time.Hour, BigRoom: 100, BigTick: 8 * time.Hour})
	sinks := make([]*countSink, n)
	for i := range sinks {
		sinks[i] = &countSink{keep: true}
		attach(t, r, sinks[i], fmt.Sprint(i), 0, false)
	}
	return r, sinks
}

func attach(t *testing.T, r *rig, s *countSink, session string, cursor uint64, hasCursor bool) {
	t.Helper()
	c := &Conn{Sink: s, Room: "big", Session: session, Member: presence.Member{Session: session}}
	if err := r.node.Attach(context.Background(), c, cursor, hasCursor); err != nil {
		t.Fatal(err)
	}
}

// written counts the sinks whose received seqs end at seq.
func written(t *testing.T, sinks []*countSink, seq uint64) int {
	n := 0
	for _, s := range sinks {
		if got := s.seqs(t); len(got) > 0 && got[len(got)-1] == seq {
			n++
		}
	}
	return n
}

// TestSpreadWrites: a big room's viewers are written in groups at staggered
// phases of BigTick, each group every BigTick with everything since its last
// write; every viewer gets every message once, in order; a must-deliver
// message writes every group at once; a viewer joining mid-cycle continues
// from its group's cursor; Flush ends the spread.
func TestSpreadWrites(t *testing.T) {
	const n = 4 * spreadGroupMin
	r, sinks := spreadRig(t, n)
	t0 := time.Now()
	r.append(t, "big", message.KindChat, 100) // 1: a room-wide batch (the merge window), then the spread starts
	next := r.node.tick(t0.Add(8*time.Hour+time.Minute), false, true)
	if w := written(t, sinks, 1); w != n {
		t.Fatalf("room-wide batch reached %d of %d", w, n)
	}
	start := t0.Add(8*time.Hour + time.Minute)
	if want := start.Add(2 * time.Hour); !next.Equal(want) {
		t.Fatalf("first group due %v after the start, want 2h", next.Sub(start))
	}
	r.append(t, "big", message.KindChat, 100) // 2
	r.append(t, "big", message.KindChat, 100) // 3
	if next := r.node.tick(start.Add(time.Hour), false, true); !next.Equal(start.Add(2 * time.Hour)) {
		t.Fatalf("no group due yet: next %v", next.Sub(start))
	}
	if w := written(t, sinks, 3); w != 0 {
		t.Fatalf("%d written before any group was due", w)
	}
	late := &countSink{keep: true} // joins now: its group's cursor is 1
	attach(t, r, late, "late", 1, true)
	for i := 1; i <= 4; i++ {
		r.node.tick(start.Add(time.Duration(2*i)*time.Hour), false, true)
		if w := written(t, append(sinks, late), 3); w < i*n/4 || w > i*n/4+1 {
			t.Fatalf("after group %d's phase, %d viewers have seq 3, want ~%d", i, w, i*n/4)
		}
	}
	r.append(t, "big", message.KindChat, 100)       // 4: waits for each group's phase
	r.append(t, "big", message.KindQuizReveal, 100) // 5: must-deliver: the node's loop wakes and writes every group
	testutil.WaitFor(t, "the reveal at every viewer", 30*time.Second, func() bool { return written(t, append(sinks, late), 5) == n+1 })
	r.append(t, "big", message.KindChat, 100) // 6: Flush writes every group and ends the spread
	if err := r.node.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.node.mu.RLock()
	h := r.node.hubs["big"]
	r.node.mu.RUnlock()
	if h.spreading() {
		t.Fatal("still spread after Flush")
	}
	want := []uint64{1, 2, 3, 4, 5, 6}
	for i, s := range sinks {
		if got := s.seqs(t); !slices.Equal(got, want) {
			t.Fatalf("viewer %d got %v, want %v", i, got, want)
		}
		if w := s.n.Load(); w > 8 { // first batch, 2 counts, 1, 2–3, 4–5, 6 (and at most one more)
			t.Fatalf("viewer %d: %d writes", i, w)
		}
	}
	if got := late.seqs(t); !slices.Equal(got, want[1:]) {
		t.Fatalf("late joiner got %v, want %v", got, want[1:])
	}
}

// TestNoSpread: with NoSpread a big room is written all at once per window.
func TestNoSpread(t *testing.T) {
	r := newRig(t, Config{Tick: time.Hour, BigRoom: 100, BigTick: 8 * time.Hour, NoSpread: true})
	for i := range 2 * spreadGroupMin {
		attach(t, r, &countSink{}, fmt.Sprint(i), 0, false)
	}
	r.append(t, "big", message.KindChat, 100)
	r.node.tick(time.Now().Add(9*time.Hour), false, true)
	r.node.mu.RLock()
	h := r.node.hubs["big"]
	r.node.mu.RUnlock()
	if h.spreading() {
		t.Fatal("spread with NoSpread")
	}
}
