package timeline

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"roomcast/internal/message"
	"roomcast/internal/redistest"
)

// batcher is what group commit needs of a timeline (issue 14).
type batcher interface {
	Timeline
	AppendBatch(ctx context.Context, msgs []*message.Message) ([]error, error)
}

// runBatchContract: a batch continues the room's sequence in its order,
// is read back like single appends, and a Dedupe key repeated inside the
// batch or from an earlier append answers with the first append's ack.
func runBatchContract(t *testing.T, tl batcher) {
	ctx := context.Background()
	msg := func(text, dedupe string) *message.Message {
		return &message.Message{ID: "id-" + text, Room: "b", Kind: message.KindChat, Scope: message.ScopeRoom, Text: text, Dedupe: dedupe}
	}
	if _, err := tl.Append(ctx, msg("one", "k1")); err != nil {
		t.Fatal(err)
	}
	batch := []*message.Message{msg("two", ""), msg("three", "k3"), msg("again-one", "k1"), msg("four", ""), msg("again-three", "k3")}
	errs, err := tl.AppendBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		seq uint64
		dup bool
		id  string
	}{{2, false, "id-two"}, {3, false, "id-three"}, {1, true, "id-one"}, {4, false, "id-four"}, {3, true, "id-three"}}
	for i, w := range want {
		dup := errs != nil && errors.Is(errs[i], ErrDuplicate)
		if m := batch[i]; m.Seq != w.seq || dup != w.dup || m.ID != w.id || m.Epoch == "" {
			t.Errorf("batch[%d] %s: seq %d dup %v id %s epoch %q; want seq %d dup %v id %s", i, m.Text, m.Seq, dup, m.ID, m.Epoch, w.seq, w.dup, w.id)
		}
	}
	p, err := tl.Range(ctx, "b", 0, 10)
	if err != nil || len(p.Msgs) != 4 || p.Head != 4 {
		t.Fatalf("range: %d msgs head %d err %v", len(p.Msgs), p.Head, err)
	}
	for i, text := range []string{"one", "two", "three", "four"} {
		if m := p.Msgs[i]; m.Seq != uint64(i+1) || m.Text != text {
			t.Errorf("stored %d: seq %d %q", i, m.Seq, m.Text)
		}
	}
	for i, b := range []*message.Message{batch[0], batch[1], batch[3]} { // byte for byte as acknowledged
		if got, want := string(p.Msgs[i+1].Encoded()), string(b.Encoded()); got != want {
			t.Errorf("stored %s\nacked  %s", got, want)
		}
	}
	if seq, err := tl.Append(ctx, msg("five", "")); err != nil || seq != 5 {
		t.Fatalf("an append after the batch: %d %v", seq, err)
	}
}

func TestBatchMemory(t *testing.T) { runBatchContract(t, NewMemory(Retention{}, nil)) }

func TestBatchRedis(t *testing.T) {
	c := redistest.Client(t)
	runBatchContract(t, NewRedis(c, RedisConfig{Prefix: redistest.Prefix(t, c)}))
}

// A failed call (Redis gone) reports the whole batch as failed.
func TestBatchRedisDown(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redistest.Client(t, srv.Addr())
	tl := NewRedis(c, RedisConfig{Prefix: "t:"})
	ctx := context.Background()
	if _, err := tl.AppendBatch(ctx, []*message.Message{{ID: "a", Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "a"}}); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	batch := make([]*message.Message, 8)
	for i := range batch {
		batch[i] = &message.Message{ID: fmt.Sprint("m", i), Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "x"}
	}
	if _, err := tl.AppendBatch(ctx, batch); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append with Redis down: %v, want ErrUnavailable", err)
	}
}
