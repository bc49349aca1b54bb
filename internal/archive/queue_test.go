package archive

import (
	"context"
	"strconv"
	"testing"
	"time"

	"roomcast/internal/message"
	"roomcast/internal/store"
	wait "roomcast/internal/testutil"
)

func qe(i int) entry {
	return entry{session: "s", m: &message.Message{ID: strconv.Itoa(i)}}
}

// The queue keeps order across takes and compaction, bounds what waits,
// and wakes the writer only when a batch begins and when it is full.
func TestQueue(t *testing.T) {
	q := newQueue(10, 4)
	woken := func() bool {
		select {
		case <-q.wake:
			return true
		default:
			return false
		}
	}
	if !q.push(qe(0)) || !woken() {
		t.Fatal("the first entry must wake the writer")
	}
	for i := 1; i < 3; i++ {
		q.push(qe(i))
	}
	if woken() {
		t.Fatal("entries 2 and 3 of a batch of 4 must not wake the writer")
	}
	q.push(qe(3))
	if !woken() {
		t.Fatal("a full batch must wake the writer")
	}
	next := 0
	check := func(got []entry) {
		t.Helper()
		for _, e := range got {
			if e.m.ID != strconv.Itoa(next) {
				t.Fatalf("took %s, want %d", e.m.ID, next)
			}
			next++
		}
	}
	check(q.take(nil, 3)) // 0..2; 3 waits
	pushed := 4
	for ; q.push(qe(pushed)); pushed++ {
	}
	if q.len() != 10 || pushed != 13 {
		t.Fatalf("len %d after pushing up to %d, want 10 waiting (the bound)", q.len(), pushed)
	}
	for q.len() > 0 {
		check(q.take(nil, 4))
	}
	if next != 13 {
		t.Fatalf("took %d entries, want 13", next)
	}
	for i := range q.buf[:cap(q.buf)] {
		if q.buf[:cap(q.buf)][i].m != nil {
			t.Fatal("a taken entry is still referenced by the queue")
		}
	}
}

// A full batch is written at once, without waiting for the linger; a
// partial one waits for it (here: for Close, which drains it).
func TestWriterFullBatchSkipsLinger(t *testing.T) {
	st, err := store.OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := New(context.Background(), Config{Batch: 10, Linger: time.Hour}, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 25; i++ { // two full batches and 5 lingering
		a.Add("s1", msg(i, int64(i)))
	}
	wait.WaitFor(t, "two full batches written", 10*time.Second, func() bool { return value(a.met.Written) == 20 })
	if n := a.q.len(); n != 5 {
		t.Fatalf("%d queued, want the 5 of the partial batch", n)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := value(a.met.Written); w != 25 {
		t.Fatalf("written %v after Close, want 25", w)
	}
}

// BenchmarkAdd is the send path's cost of handing a message to the archive,
// from parallel senders (the writer running and writing to SQLite).
func BenchmarkAdd(b *testing.B) {
	a := benchArchive(b)
	m := &message.Message{ID: "x", Room: "bench", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "hi"}
	m.Seal()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Add("s", m)
		}
	})
	b.ReportMetric(value(a.met.Dropped)/float64(b.N), "dropped/op")
}
