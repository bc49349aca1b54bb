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

// setClock makes tl read the time from now (the dedupe bucket tests).
func setClock(t *testing.T, tl Timeline, now func() time.Time) {
	t.Helper()
	switch x := tl.(type) {
	case *Memory:
		x.now = now
	case *Redis:
		x.now = now
	default:
		t.Fatalf("no clock to set on %T", tl)
	}
}

// runDedupeBuckets: an ack is remembered for DedupeTTL whatever bucket
// boundaries it crosses (the Redis timeline keeps acks in DedupeTTL-long
// buckets, rotated when the next one begins), forgotten after twice that
// plus the slack, and the counter and epoch go on across rotations and
// long idle times.
func runDedupeBuckets(t *testing.T, newTL factory) {
	ctx := context.Background()
	tl := newTL(t, Retention{}, nil)
	// One second before a bucket boundary of the Redis timeline, a few
	// buckets from now.
	l := bucketLen.Milliseconds()
	t0 := time.UnixMilli((time.Now().UnixMilli()/l+3)*l - 1000)
	now := t0
	setClock(t, tl, func() time.Time { return now })
	n := 0
	send := func(key string) (*message.Message, error) {
		n++
		m := &message.Message{ID: fmt.Sprint("m", n), Room: "bk", Kind: message.KindChat, Scope: message.ScopeRoom, Text: fmt.Sprint(n), Dedupe: key}
		_, err := tl.Append(ctx, m)
		if err != nil && !errors.Is(err, ErrDuplicate) {
			t.Fatalf("append %s at %v: %v", key, now.Sub(t0), err)
		}
		return m, err
	}
	a, _ := send("a")
	want := func(key string, dup bool, seq uint64) {
		t.Helper()
		m, err := send(key)
		if errors.Is(err, ErrDuplicate) != dup || m.Seq != seq || m.Epoch != a.Epoch {
			t.Fatalf("%s at t0+%v: seq %d dup %v epoch %q, want seq %d dup %v epoch %q", key, now.Sub(t0), m.Seq, err != nil, m.Epoch, seq, dup, a.Epoch)
		}
		if dup {
			if ack, ok, err := tl.Recall(ctx, "bk", key); err != nil || !ok || ack.Seq != seq || ack.Epoch != a.Epoch {
				t.Fatalf("recall %s at t0+%v: %+v %v %v", key, now.Sub(t0), ack, ok, err)
			}
		}
	}
	now = t0.Add(2 * time.Second) // the next bucket
	want("a", true, 1)
	want("b", false, 2)
	now = t0.Add(DedupeTTL - time.Millisecond) // a's last moment
	want("a", true, 1)
	want("b", true, 2)
	now = t0.Add(2*time.Second + DedupeTTL - time.Millisecond) // b's last moment (the previous bucket's acks are forgotten now)
	want("b", true, 2)
	want("c", false, 3)
	now = t0.Add(3*DedupeTTL + bucketSlack + time.Second) // idle for longer than a bucket: all forgotten
	want("a", false, 4)
	want("b", false, 5)
	want("c", false, 6)
	now = now.Add(24 * time.Hour) // a day later: the counter and epoch go on
	if _, ok, err := tl.Recall(ctx, "bk", "c"); err != nil || ok {
		t.Fatalf("recall after a day: %v %v", ok, err)
	}
	if h, err := tl.Head(ctx, "bk"); err != nil || h != (Position{Head: 6, Epoch: a.Epoch}) {
		t.Fatalf("head after a day: %+v %v", h, err)
	}
	want("c", false, 7)
	want("c", true, 7)
}

// runBatchEntries is the contract for batches (group commit, issue 14),
// which the Redis timeline stores as one stream entry per batch: reads
// starting anywhere inside an entry, count and age trimming across
// entries, dedupe within and across batches, and rotation.
func runBatchEntries(t *testing.T, newTL factory) {
	ctx := context.Background()
	batch := func(room string, n int, text string) []*message.Message {
		ms := make([]*message.Message, n)
		for i := range ms {
			ms[i] = &message.Message{ID: fmt.Sprint(text, i), Room: room, Kind: message.KindChat, Scope: message.ScopeRoom, Text: fmt.Sprint(text, i)}
		}
		return ms
	}
	appendAll := func(t *testing.T, tl batcher, ms []*message.Message) []error {
		t.Helper()
		errs, err := tl.AppendBatch(ctx, ms)
		if err != nil {
			t.Fatal(err)
		}
		return errs
	}

	t.Run("RangeInsideEntries", func(t *testing.T) {
		tl := newTL(t, Retention{}, nil).(batcher)
		var texts []string // by seq - 1
		for _, n := range []int{10, 1, 5, 3} {
			ms := batch("m", n, fmt.Sprint("b", len(texts), "-"))
			appendAll(t, tl, ms)
			for i, m := range ms {
				if m.Seq != uint64(len(texts)+1) {
					t.Fatalf("batch message %d: seq %d, want %d", i, m.Seq, len(texts)+1)
				}
				texts = append(texts, m.Text)
			}
		}
		for after := 0; after <= len(texts); after++ {
			for limit := 1; limit <= len(texts)+1; limit++ {
				p, err := tl.Range(ctx, "m", uint64(after), limit)
				if err != nil || p.Head != uint64(len(texts)) || p.First != 1 {
					t.Fatalf("range(%d, %d): head %d first %d err %v", after, limit, p.Head, p.First, err)
				}
				want := texts[after:min(len(texts), after+limit)]
				if len(p.Msgs) != len(want) {
					t.Fatalf("range(%d, %d): %d messages, want %d", after, limit, len(p.Msgs), len(want))
				}
				for i, m := range p.Msgs {
					if m.Seq != uint64(after+i+1) || m.Text != want[i] || m.Epoch != p.Epoch {
						t.Fatalf("range(%d, %d)[%d]: seq %d %q epoch %q, want seq %d %q", after, limit, i, m.Seq, m.Text, m.Epoch, after+i+1, want[i])
					}
				}
			}
		}
	})

	t.Run("RetentionByCountAcrossEntries", func(t *testing.T) {
		tl := newTL(t, Retention{MaxCount: 10}, nil).(batcher)
		for i := 0; i < 5; i++ {
			appendAll(t, tl, batch("rc", 7, fmt.Sprint(i, "-")))
		}
		p, err := tl.Range(ctx, "rc", 0, 100)
		if err != nil || p.Head != 35 || p.First != 26 || len(p.Msgs) != 10 || p.Msgs[0].Seq != 26 || p.Msgs[9].Seq != 35 {
			t.Fatalf("got %d msgs head %d first %d err %v", len(p.Msgs), p.Head, p.First, err)
		}
		if p, _ := tl.Range(ctx, "rc", 30, 3); len(p.Msgs) != 3 || p.Msgs[0].Seq != 31 || p.First != 26 {
			t.Fatalf("range after 30: %d msgs first %d", len(p.Msgs), p.First)
		}
	})

	t.Run("RetentionByAgeAcrossEntries", func(t *testing.T) {
		tl := newTL(t, Retention{MaxAge: time.Second}, nil).(batcher)
		old := batch("ra", 4, "old")
		for _, m := range old {
			m.TS = time.Now().Add(-time.Minute).UnixMilli()
		}
		appendAll(t, tl, old)
		appendAll(t, tl, batch("ra", 3, "new"))
		p, err := tl.Range(ctx, "ra", 0, 100)
		if err != nil || p.Head != 7 || p.First != 5 || len(p.Msgs) != 3 || p.Msgs[0].Text != "new0" {
			t.Fatalf("got %d msgs head %d first %d err %v", len(p.Msgs), p.Head, p.First, err)
		}
	})

	t.Run("DedupeAcrossBatchesAndRotate", func(t *testing.T) {
		tl := newTL(t, Retention{}, nil).(batcher)
		first := batch("dd", 4, "a")
		for i, m := range first {
			m.Dedupe = fmt.Sprint("k", i%2) // k0 k1 k0 k1: the repeats inside the batch are duplicates
		}
		errs := appendAll(t, tl, first)
		if errs == nil || !errors.Is(errs[2], ErrDuplicate) || !errors.Is(errs[3], ErrDuplicate) || first[2].Seq != 1 || first[3].Seq != 2 {
			t.Fatalf("repeats in one batch: errs %v seqs %d %d", errs, first[2].Seq, first[3].Seq)
		}
		second := batch("dd", 3, "b")
		second[0].Dedupe, second[2].Dedupe = "k1", "k2"
		errs = appendAll(t, tl, second)
		if errs == nil || !errors.Is(errs[0], ErrDuplicate) || second[0].Seq != 2 || second[0].ID != "a1" || second[1].Seq != 3 || second[2].Seq != 4 {
			t.Fatalf("repeat across batches: errs %v seqs %d %d %d", errs, second[0].Seq, second[1].Seq, second[2].Seq)
		}
		if a, ok, err := tl.Recall(ctx, "dd", "k2"); err != nil || !ok || a.Seq != 4 || a.ID != "b2" || a.Epoch != second[2].Epoch {
			t.Fatalf("recall k2: %+v %v %v", a, ok, err)
		}
		e, err := tl.Rotate(ctx, "dd", first[0].Epoch)
		if err != nil || e == first[0].Epoch {
			t.Fatalf("rotate: %q %v", e, err)
		}
		if _, ok, err := tl.Recall(ctx, "dd", "k2"); err != nil || ok {
			t.Fatalf("recall of an old epoch's key after rotate: %v %v", ok, err)
		}
		third := batch("dd", 2, "c")
		third[0].Dedupe, third[1].Dedupe = "k0", "k2"
		if errs := appendAll(t, tl, third); errs != nil && (errs[0] != nil || errs[1] != nil) {
			t.Fatalf("keys of the old epoch in a new one: %v", errs)
		}
		if third[0].Seq != 5 || third[1].Seq != 6 || third[0].Epoch != e {
			t.Fatalf("after rotate: seqs %d %d epoch %q (want %q)", third[0].Seq, third[1].Seq, third[0].Epoch, e)
		}
		p, err := tl.Range(ctx, "dd", 3, 10)
		if err != nil || p.Epoch != e || len(p.Msgs) != 3 || p.Msgs[0].Text != "b2" || p.Msgs[2].Text != "c1" {
			t.Fatalf("range after rotate: %+v %v", p, err)
		}
	})
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T, ret Retention, notify Notify) Timeline {
		return NewMemory(ret, notify)
	})
	runBatchEntries(t, func(t *testing.T, ret Retention, notify Notify) Timeline {
		return NewMemory(ret, notify)
	})
	t.Run("DedupeBuckets", func(t *testing.T) {
		runDedupeBuckets(t, func(t *testing.T, ret Retention, notify Notify) Timeline {
			return NewMemory(ret, notify)
		})
	})
}
