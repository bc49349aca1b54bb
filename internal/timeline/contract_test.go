package timeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"roomcast/internal/message"
)

// factory builds a fresh, empty Timeline for one contract sub-test.
type factory func(t *testing.T, ret Retention, notify Notify) Timeline

// runContract is the shared contract every Timeline implementation passes.
func runContract(t *testing.T, newTL factory) {
	ctx := context.Background()
	msg := func(room, text string) *message.Message {
		return &message.Message{ID: text, Room: room, Kind: message.KindChat, Scope: message.ScopeRoom, Text: text}
	}

	t.Run("SeqStartsAtOneAndIncrements", func(t *testing.T) {
		tl := newTL(t, Retention{}, nil)
		for i := 1; i <= 5; i++ {
			seq, err := tl.Append(ctx, msg("a", fmt.Sprint(i)))
			if err != nil || seq != uint64(i) {
				t.Fatalf("append %d: seq %d err %v", i, seq, err)
			}
		}
		if seq, _ := tl.Append(ctx, msg("b", "x")); seq != 1 {
			t.Fatalf("rooms must have separate sequences, got %d", seq)
		}
		p, err := tl.Range(ctx, "a", 2, 10)
		if err != nil || p.Head != 5 || p.First != 1 || len(p.Msgs) != 3 || p.Msgs[0].Seq != 3 || p.Msgs[2].Text != "5" {
			t.Fatalf("range: %d msgs head %d first %d err %v", len(p.Msgs), p.Head, p.First, err)
		}
		if p, _ := tl.Range(ctx, "a", 5, 10); len(p.Msgs) != 0 || p.Head != 5 {
			t.Fatalf("range at head: %d msgs head %d", len(p.Msgs), p.Head)
		}
		if p, _ := tl.Range(ctx, "none", 0, 10); len(p.Msgs) != 0 || p.Head != 0 || p.First != 1 || p.Epoch != "" {
			t.Fatalf("empty room: %d msgs head %d first %d epoch %q", len(p.Msgs), p.Head, p.First, p.Epoch)
		}
		if h, _ := tl.Head(ctx, "a"); h.Head != 5 {
			t.Fatalf("head %d", h.Head)
		}
	})

	t.Run("ConcurrentWritersNeverSkip", func(t *testing.T) {
		var mu sync.Mutex
		var notified []uint64
		tl := newTL(t, Retention{}, func(m *message.Message) {
			mu.Lock()
			notified = append(notified, m.Seq)
			mu.Unlock()
		})
		const writers, each = 16, 50
		var wg sync.WaitGroup
		seen := make(chan uint64, writers*each)
		// A reader pages by cursor while writers append; it must see every seq.
		done := make(chan struct{})
		var readErr error
		got := make([]uint64, 0, writers*each)
		go func() {
			defer close(done)
			var cursor uint64
			deadline := time.Now().Add(20 * time.Second)
			for cursor < writers*each && time.Now().Before(deadline) {
				p, err := tl.Range(ctx, "c", cursor, 37)
				if err != nil {
					readErr = err
					return
				}
				for _, m := range p.Msgs {
					got = append(got, m.Seq)
					cursor = m.Seq
				}
			}
		}()
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					seq, err := tl.Append(ctx, msg("c", fmt.Sprintf("%d-%d", w, i)))
					if err != nil {
						t.Error(err)
						return
					}
					seen <- seq
				}
			}(w)
		}
		wg.Wait()
		close(seen)
		<-done
		if readErr != nil {
			t.Fatal(readErr)
		}
		uniq := map[uint64]bool{}
		for s := range seen {
			if uniq[s] {
				t.Fatalf("seq %d assigned twice", s)
			}
			uniq[s] = true
		}
		for i, s := range got {
			if s != uint64(i+1) {
				t.Fatalf("reader saw seq %d at position %d", s, i)
			}
		}
		if len(got) != writers*each {
			t.Fatalf("reader saw %d of %d", len(got), writers*each)
		}
		mu.Lock()
		defer mu.Unlock()
		if notified != nil {
			for i, s := range notified {
				if s != uint64(i+1) {
					t.Fatalf("notify out of order: %d at %d", s, i)
				}
			}
		}
	})

	t.Run("RetentionByCount", func(t *testing.T) {
		tl := newTL(t, Retention{MaxCount: 10}, nil)
		for i := 0; i < 25; i++ {
			if _, err := tl.Append(ctx, msg("r", fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		p, err := tl.Range(ctx, "r", 0, 100)
		if err != nil || p.Head != 25 || len(p.Msgs) != 10 || p.First != 16 || p.Msgs[0].Seq != 16 {
			t.Fatalf("got %d msgs head %d first %d err %v", len(p.Msgs), p.Head, p.First, err)
		}
	})

	t.Run("RetentionByAge", func(t *testing.T) {
		tl := newTL(t, Retention{MaxAge: time.Second}, nil)
		old := msg("g", "old")
		old.TS = time.Now().Add(-time.Minute).UnixMilli()
		if _, err := tl.Append(ctx, old); err != nil {
			t.Fatal(err)
		}
		if _, err := tl.Append(ctx, msg("g", "new")); err != nil {
			t.Fatal(err)
		}
		p, err := tl.Range(ctx, "g", 0, 100)
		if err != nil || p.Head != 2 || len(p.Msgs) != 1 || p.Msgs[0].Text != "new" || p.First != 2 {
			t.Fatalf("got %d msgs head %d first %d err %v", len(p.Msgs), p.Head, p.First, err)
		}
	})

	t.Run("EncodingSealed", func(t *testing.T) {
		tl := newTL(t, Retention{}, nil)
		m := msg("e", `<b>"hi"</b>`)
		if _, err := tl.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		p, _ := tl.Range(ctx, "e", 0, 1)
		msgs := p.Msgs
		enc := string(msgs[0].Encoded())
		want := `"seq":1,"id":"\u003cb\u003e\"hi\"\u003c/b\u003e"`
		if !strings.Contains(enc, want) || msgs[0].Seq != 1 || msgs[0].TS == 0 {
			t.Fatalf("bad stored message %q", enc)
		}
	})

	t.Run("Epoch", func(t *testing.T) {
		tl := newTL(t, Retention{}, nil)
		m1 := msg("ep", "1")
		if _, err := tl.Append(ctx, m1); err != nil {
			t.Fatal(err)
		}
		m2 := msg("ep", "2")
		if _, err := tl.Append(ctx, m2); err != nil {
			t.Fatal(err)
		}
		if m1.Epoch == "" || m2.Epoch != m1.Epoch {
			t.Fatalf("epochs %q and %q: want one non-empty epoch", m1.Epoch, m2.Epoch)
		}
		p, err := tl.Range(ctx, "ep", 0, 10)
		if err != nil || p.Epoch != m1.Epoch || len(p.Msgs) != 2 || p.Msgs[0].Epoch != m1.Epoch {
			t.Fatalf("range epoch %q (%d msgs), want %q: %v", p.Epoch, len(p.Msgs), m1.Epoch, err)
		}
		if h, err := tl.Head(ctx, "ep"); err != nil || h != (Position{Head: 2, Epoch: m1.Epoch}) {
			t.Fatalf("head %+v %v", h, err)
		}
		if h, err := tl.Head(ctx, "none"); err != nil || h != (Position{}) {
			t.Fatalf("head of a room without messages %+v %v", h, err)
		}
		other := msg("ep2", "x")
		if _, err := tl.Append(ctx, other); err != nil || other.Epoch == m1.Epoch {
			t.Fatalf("two rooms share epoch %q (%v)", other.Epoch, err)
		}
	})

	t.Run("Rotate", func(t *testing.T) {
		tl := newTL(t, Retention{}, nil)
		m := msg("rot", "1")
		m.Dedupe = "u:1"
		if _, err := tl.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		if e, err := tl.Rotate(ctx, "rot", "not-the-epoch"); err != nil || e != m.Epoch {
			t.Fatalf("rotate from another epoch: %q %v, want the epoch unchanged (%q)", e, err, m.Epoch)
		}
		e, err := tl.Rotate(ctx, "rot", m.Epoch)
		if err != nil || e == "" || e == m.Epoch {
			t.Fatalf("rotate: %q %v (was %q)", e, err, m.Epoch)
		}
		next := msg("rot", "2")
		next.Dedupe = "u:1" // remembered in the old epoch: stored again
		if seq, err := tl.Append(ctx, next); err != nil || seq != 2 || next.Epoch != e {
			t.Fatalf("append after rotate: seq %d epoch %q err %v, want 2 in %q", seq, next.Epoch, err, e)
		}
		if p, _ := tl.Range(ctx, "rot", 0, 10); p.Epoch != e || p.Head != 2 {
			t.Fatalf("range after rotate: %+v", p)
		}
	})

	t.Run("IdempotentAppend", func(t *testing.T) {
		tl := newTL(t, Retention{}, nil)
		first := msg("d", "first")
		first.Dedupe, first.Priority = "u1:abc", 7
		if seq, err := tl.Append(ctx, first); err != nil || seq != 1 {
			t.Fatalf("append: %d %v", seq, err)
		}
		again := msg("d", "again")
		again.Dedupe = "u1:abc"
		seq, err := tl.Append(ctx, again)
		if !errors.Is(err, ErrDuplicate) || seq != 1 || again.Seq != 1 || again.ID != "first" || again.TS != first.TS || again.Priority != 7 || again.Epoch != first.Epoch {
			t.Fatalf("repeat: seq %d err %v msg %+v; want the first ack %+v", seq, err, again, first)
		}
		if a, ok, err := tl.Recall(ctx, "d", "u1:abc"); err != nil || !ok || a != (Ack{Seq: 1, ID: "first", TS: first.TS, Priority: 7, Epoch: first.Epoch}) {
			t.Fatalf("recall: %+v %v %v", a, ok, err)
		}
		if _, ok, err := tl.Recall(ctx, "d", "u1:nope"); err != nil || ok {
			t.Fatalf("recall of an unknown key: %v %v", ok, err)
		}
		if _, ok, err := tl.Recall(ctx, "other", "u1:abc"); err != nil || ok {
			t.Fatalf("recall in another room: %v %v", ok, err)
		}
		// The same key from many goroutines at once: stored once, one ack for all.
		var wg sync.WaitGroup
		acks := make(chan string, 16)
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				m := msg("d", fmt.Sprint("c", i))
				m.Dedupe = "u2:same"
				if _, err := tl.Append(ctx, m); err != nil && !errors.Is(err, ErrDuplicate) {
					t.Error(err)
				}
				acks <- fmt.Sprint(m.Seq, m.ID)
			}(i)
		}
		wg.Wait()
		close(acks)
		distinct := map[string]bool{}
		for a := range acks {
			distinct[a] = true
		}
		p, _ := tl.Range(ctx, "d", 0, 100)
		if len(distinct) != 1 || len(p.Msgs) != 2 || p.Head != 2 {
			t.Fatalf("concurrent repeats: acks %v, stored %d (head %d); want one ack and one message", distinct, len(p.Msgs), p.Head)
		}
	})
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T, ret Retention, notify Notify) Timeline {
		return NewMemory(ret, notify)
	})
}
