package commit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/message"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// store is an in-memory appender that records each call, and can hold the
// first call until released (so later sends pile up into one batch) or fail
// a chosen call.
type store struct {
	mu    sync.Mutex
	seq   map[string]uint64
	calls [][]*message.Message
	hold  chan struct{} // the first call waits for it, if set
	fail  int           // the call number (1-based) that fails, 0 = none
	delay time.Duration // every call takes this long (a remote store)
}

func (s *store) AppendBatch(ctx context.Context, msgs []*message.Message) ([]error, error) {
	s.mu.Lock()
	s.calls = append(s.calls, msgs)
	n := len(s.calls)
	hold := s.hold
	s.mu.Unlock()
	if n == 1 && hold != nil {
		<-hold
	}
	time.Sleep(s.delay)
	if n == s.fail {
		return nil, errors.New("redis: connection reset mid-batch")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.seq[m.Room]++
		m.Seq = s.seq[m.Room]
	}
	return nil, nil
}

func (s *store) callCount() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.calls) }

func msg(room, text string) *message.Message {
	return &message.Message{Room: room, Kind: message.KindChat, Scope: message.ScopeRoom, Text: text}
}

// 64 concurrent senders, 20 messages each, into one room: every send gets
// its own ack, seqs are the arrival order (each sender's own messages in
// the order it sent them), and the sends that arrived during an append were
// stored together.
func TestOrderAndAcksUnder64Senders(t *testing.T) {
	st := &store{seq: map[string]uint64{}, hold: make(chan struct{})}
	c := New(st, Config{MinBatch: 64, Linger: -1}, nil) // grouping by in-flight appends alone
	defer c.Close()
	const senders, each = 64, 20
	type ack struct {
		seq  uint64
		text string
	}
	acks := make([][]ack, senders)
	var wg sync.WaitGroup
	queued := make(chan struct{}, senders)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				text := fmt.Sprintf("s%d-%d", s, i)
				if i == 0 {
					queued <- struct{}{}
				}
				seq, err := c.Append(context.Background(), msg("hot", text))
				if err != nil {
					t.Errorf("%s: %v", text, err)
					return
				}
				acks[s] = append(acks[s], ack{seq, text})
			}
		}()
	}
	for range senders {
		<-queued
	}
	// Every sender has started its first send; the first append is held,
	// so the others queue behind it. Release it once they are all queued.
	held := 0
	ok := testutil.Eventually(10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		r := c.rooms["hot"]
		if r == nil || st.callCount() != 1 {
			return false
		}
		held = len(st.calls[0])
		return held+len(r.queue) == senders
	})
	close(st.hold)
	if !ok {
		t.Fatal("the first sends did not queue behind the held append")
	}
	wg.Wait()
	seen := map[uint64]string{}
	for s := range senders {
		if len(acks[s]) != each {
			t.Fatalf("sender %d got %d acks", s, len(acks[s]))
		}
		for i, a := range acks[s] {
			if prev, dup := seen[a.seq]; dup {
				t.Fatalf("seq %d acked to %s and %s", a.seq, prev, a.text)
			}
			seen[a.seq] = a.text
			if i > 0 && a.seq <= acks[s][i-1].seq {
				t.Fatalf("sender %d: %s got seq %d after seq %d", s, a.text, a.seq, acks[s][i-1].seq)
			}
		}
	}
	if len(seen) != senders*each {
		t.Fatalf("%d distinct seqs for %d sends", len(seen), senders*each)
	}
	// The stored order is the arrival order: the calls' messages, in call
	// order, have consecutive seqs.
	var next uint64 = 1
	for _, call := range st.calls {
		for _, m := range call {
			if m.Seq != next {
				t.Fatalf("stored seq %d where %d was next", m.Seq, next)
			}
			next++
		}
	}
	// (The held senders' next sends may join them: they are acked before
	// the drain takes its next batch.)
	if held < senders && (len(st.calls[1]) < senders-held || len(st.calls[1]) > senders) {
		t.Fatalf("the %d sends queued behind the first append were not stored together: the second call holds %d", senders-held, len(st.calls[1]))
	}
	if st.callCount() >= senders*each {
		t.Fatalf("%d sends took %d append calls: nothing was grouped", senders*each, st.callCount())
	}
	t.Logf("%d sends in %d append calls", senders*each, st.callCount())
}

// A store error mid-batch acknowledges none of that batch; the batches
// before and after are unaffected.
func TestStoreErrorFailsTheWholeBatch(t *testing.T) {
	st := &store{seq: map[string]uint64{}, hold: make(chan struct{}), fail: 2}
	c := New(st, Config{}, nil)
	defer c.Close()
	first := make(chan error, 1)
	go func() { _, err := c.Append(context.Background(), msg("r", "first")); first <- err }()
	testutil.WaitFor(t, "the first append to start", 10*time.Second, func() bool { return st.callCount() == 1 })
	const n = 10
	errc := make(chan error, n)
	var batch sync.WaitGroup
	for i := range n {
		batch.Add(1)
		go func() {
			defer batch.Done()
			seq, err := c.Append(context.Background(), msg("r", fmt.Sprint("b", i)))
			if err == nil {
				err = fmt.Errorf("acked with seq %d", seq)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	ok := testutil.Eventually(10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.rooms["r"].queue) == n
	})
	close(st.hold)
	if !ok {
		t.Fatal("the batch did not queue")
	}
	if err := <-first; err != nil {
		t.Fatalf("the batch before the failing one: %v", err)
	}
	batch.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatalf("a message of the failed batch was acknowledged: %v", err)
		}
	}
	if seq, err := c.Append(context.Background(), msg("r", "after")); err != nil || seq != 2 {
		t.Fatalf("the append after the failure: seq %d, %v (want 2: nothing of the failed batch stored)", seq, err)
	}
}

func TestAdaptiveLimit(t *testing.T) {
	c := New(&store{seq: map[string]uint64{}}, Config{MinBatch: 4, MaxBatch: 64, Target: 10 * time.Millisecond}, nil)
	defer c.Close()
	l := 4
	for range 10 { // fast appends with a backlog (or a linger ended by the limit): grows to the max
		l = c.adapt(l, l, true, time.Millisecond, time.Millisecond)
	}
	if l != 64 {
		t.Fatalf("limit %d after fast full batches, want 64", l)
	}
	if l = c.adapt(l, 10, false, 50*time.Millisecond, 2*time.Millisecond); l != 64 {
		t.Fatalf("limit %d after one slow append in a fast room, want unchanged", l)
	}
	if l = c.adapt(l, 10, false, 50*time.Millisecond, 15*time.Millisecond); l != 32 {
		t.Fatalf("limit %d after a slow append in a slow room, want 32", l)
	}
	if l = c.adapt(l, 3, false, time.Millisecond, time.Millisecond); l != 32 {
		t.Fatalf("limit %d after a small batch, want unchanged", l)
	}
	if l = c.adapt(l, 32, false, time.Millisecond, time.Millisecond); l != 32 {
		t.Fatalf("limit %d after a full batch nothing waited behind, want unchanged", l)
	}
}

// A busy room (its last batch held more than one message) lingers: its next
// batch waits for more sends until the limit is reached (here long before
// the linger ends), and goes as one store call.
func TestBusyRoomLingersUntilFull(t *testing.T) {
	testLinger(t, time.Hour, "l3")
}

// A linger ends when no send arrived for IdleGap (closed-loop senders all
// wait for their acks), long before Linger.
func TestLingerEndsWhenSendsStop(t *testing.T) {
	testLinger(t, 5*time.Millisecond, "")
}

// busyRoom is a committer on a store taking 1 ms per call whose room "busy"
// has just stored a batch of k sends (queued behind a held first one), so
// its next batch lingers.
type busyRoom struct {
	t  *testing.T
	st *store
	c  *Committer
	wg sync.WaitGroup
}

func newBusyRoom(t *testing.T, cfg Config, k int) *busyRoom {
	b := &busyRoom{t: t, st: &store{seq: map[string]uint64{}, hold: make(chan struct{}), delay: time.Millisecond}}
	b.c = New(b.st, cfg, nil)
	t.Cleanup(b.c.Close)
	b.send("first")
	testutil.WaitFor(t, "the first append to start", 10*time.Second, func() bool { return b.st.callCount() == 1 })
	for i := range k {
		b.send(fmt.Sprint("b", i))
	}
	testutil.WaitFor(t, "the sends to queue", 10*time.Second, b.queued(k))
	close(b.st.hold)
	b.wg.Wait()
	if b.st.callCount() != 2 || len(b.st.calls[1]) != k {
		t.Fatalf("%d calls; want the %d queued sends stored together", b.st.callCount(), k)
	}
	return b
}

func (b *busyRoom) send(text string) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if _, err := b.c.Append(context.Background(), msg("busy", text)); err != nil {
			b.t.Error(text, err)
		}
	}()
}

// queued reports whether n sends wait in the room's queue.
func (b *busyRoom) queued(n int) func() bool {
	return func() bool {
		b.c.mu.Lock()
		defer b.c.mu.Unlock()
		r := b.c.rooms["busy"]
		return r != nil && len(r.queue) == n
	}
}

// lingering reports whether n sends wait in a lingering batch.
func (b *busyRoom) lingering(n int) func() bool {
	return func() bool {
		b.c.mu.Lock()
		defer b.c.mu.Unlock()
		r := b.c.rooms["busy"]
		return len(r.queue) == n && r.full != nil
	}
}

// A pause of paced senders does not end a batch smaller than the last one:
// with IdleGap a microsecond, one send lingers alone until two more arrive
// (the last batch held 3), and the three go in one call.
func TestIdleGapWaitsForTheLastBatchSize(t *testing.T) {
	b := newBusyRoom(t, Config{MinBatch: 4, MaxBatch: 4, Linger: time.Hour, IdleGap: time.Microsecond}, 3)
	b.send("p0")
	testutil.WaitFor(t, "one send to linger", 10*time.Second, b.lingering(1))
	b.send("p1")
	testutil.WaitFor(t, "two sends to linger", 10*time.Second, b.lingering(2))
	b.send("p2")
	b.wg.Wait() // with Linger an hour, returning at all shows IdleGap ended it
	if b.st.callCount() != 3 || len(b.st.calls[2]) != 3 {
		t.Fatalf("%d calls, the last of %d; want the 3 paced sends in one call", b.st.callCount(), len(b.st.calls[len(b.st.calls)-1]))
	}
}

// testLinger makes a room busy on a store taking 1 ms per call (its last
// batch 2 sends), then sends 3 messages (the limit is 4) and, if fourth is
// set, a fourth once they linger: they must be stored in one call.
func testLinger(t *testing.T, idle time.Duration, fourth string) {
	b := newBusyRoom(t, Config{MinBatch: 4, MaxBatch: 4, Linger: time.Hour, IdleGap: idle}, 2)
	st, send := b.st, b.send
	wg := &b.wg
	for i := range 3 {
		send(fmt.Sprint("l", i))
	}
	want := 3
	if fourth != "" {
		testutil.WaitFor(t, "three sends to linger", 10*time.Second, b.lingering(3))
		if n := st.callCount(); n != 2 {
			t.Fatalf("a lingering batch of 3 (limit 4) was stored: %d calls", n)
		}
		send(fourth)
		want = 4
	}
	wg.Wait() // with Linger an hour, returning at all shows the linger ended
	if fourth == "" {
		// Ended by IdleGap: how the three are grouped depends on how far
		// apart their goroutines ran (more than 5 ms on a busy machine), so
		// only that all three were stored, after the first two calls.
		stored := 0
		for _, call := range st.calls[2:] {
			stored += len(call)
		}
		if stored != 3 {
			t.Fatalf("%d lingering sends stored in calls %d.., want 3", stored, 3)
		}
		return
	}
	if st.callCount() != 3 || len(st.calls[2]) != want {
		t.Fatalf("%d calls, the last of %d; want the %d lingering sends in one call", st.callCount(), len(st.calls[len(st.calls)-1]), want)
	}
}

// A quiet room (one send at a time) never lingers, however long the linger.
func TestQuietRoomDoesNotLinger(t *testing.T) {
	st := &store{seq: map[string]uint64{}}
	c := New(st, Config{Linger: time.Hour}, nil)
	defer c.Close()
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		seq, err := c.Append(ctx, msg("quiet", fmt.Sprint(i)))
		cancel()
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("send %d: seq %d, %v", i, seq, err)
		}
	}
}

// The linger is Linger minus the measured append latency: a slower store
// waits less, one slower than Linger not at all, and an in-memory one (no
// round trip to save) not at all.
func TestLingerAdaptsToLatency(t *testing.T) {
	c := New(&store{seq: map[string]uint64{}}, Config{Linger: 20 * time.Millisecond}, nil)
	defer c.Close()
	for _, tc := range []struct {
		prev     int
		lat, got time.Duration
	}{{1, time.Millisecond, 0}, {8, time.Millisecond, 19 * time.Millisecond}, {8, 15 * time.Millisecond, 5 * time.Millisecond},
		{8, 30 * time.Millisecond, 0}, {8, 20 * time.Microsecond, 0}} { // the last: an in-memory store
		if got := c.lingerOf(&room{prev: tc.prev, lat: tc.lat}); got != tc.got {
			t.Errorf("linger with last batch %d, latency %v: %v, want %v", tc.prev, tc.lat, got, tc.got)
		}
	}
}
