package timeline

import (
	"context"
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
		msgs, head, first, err := tl.Range(ctx, "a", 2, 10)
		if err != nil || head != 5 || first != 1 || len(msgs) != 3 || msgs[0].Seq != 3 || msgs[2].Text != "5" {
			t.Fatalf("range: %d msgs head %d first %d err %v", len(msgs), head, first, err)
		}
		if msgs, head, _, _ := tl.Range(ctx, "a", 5, 10); len(msgs) != 0 || head != 5 {
			t.Fatalf("range at head: %d msgs head %d", len(msgs), head)
		}
		if msgs, head, first, _ := tl.Range(ctx, "none", 0, 10); len(msgs) != 0 || head != 0 || first != 1 {
			t.Fatalf("empty room: %d msgs head %d first %d", len(msgs), head, first)
		}
		if h, _ := tl.Head(ctx, "a"); h != 5 {
			t.Fatalf("head %d", h)
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
				msgs, _, _, err := tl.Range(ctx, "c", cursor, 37)
				if err != nil {
					readErr = err
					return
				}
				for _, m := range msgs {
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
		msgs, head, first, err := tl.Range(ctx, "r", 0, 100)
		if err != nil || head != 25 || len(msgs) != 10 || first != 16 || msgs[0].Seq != 16 {
			t.Fatalf("got %d msgs head %d first %d err %v", len(msgs), head, first, err)
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
		msgs, head, first, err := tl.Range(ctx, "g", 0, 100)
		if err != nil || head != 2 || len(msgs) != 1 || msgs[0].Text != "new" || first != 2 {
			t.Fatalf("got %d msgs head %d first %d err %v", len(msgs), head, first, err)
		}
	})

	t.Run("EncodingSealed", func(t *testing.T) {
		tl := newTL(t, Retention{}, nil)
		m := msg("e", `<b>"hi"</b>`)
		if _, err := tl.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		msgs, _, _, _ := tl.Range(ctx, "e", 0, 1)
		enc := string(msgs[0].Encoded())
		want := `"seq":1,"id":"\u003cb\u003e\"hi\"\u003c/b\u003e"`
		if !strings.Contains(enc, want) || msgs[0].Seq != 1 || msgs[0].TS == 0 {
			t.Fatalf("bad stored message %q", enc)
		}
	})
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T, ret Retention, notify Notify) Timeline {
		return NewMemory(ret, notify)
	})
}
