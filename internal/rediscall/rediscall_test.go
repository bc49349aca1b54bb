package rediscall

import (
	"context"
	"errors"
	"testing"
)

func TestDo(t *testing.T) {
	ran := 0
	do := func(context.Context) error { ran++; return nil }
	if err := Func(nil).Do(context.Background(), "op", 1, do); err != nil || ran != 1 {
		t.Fatalf("nil Func: err %v, ran %d", err, ran)
	}
	open := errors.New("breaker open")
	var gotOp string
	var gotN int
	f := Func(func(ctx context.Context, op string, n int, do func(context.Context) error) error {
		gotOp, gotN = op, n
		if n > 2 {
			return open
		}
		return do(ctx)
	})
	if err := f.Do(context.Background(), "likes_add", 2, do); err != nil || ran != 2 || gotOp != "likes_add" || gotN != 2 {
		t.Fatalf("wrapped: err %v ran %d op %q n %d", err, ran, gotOp, gotN)
	}
	if err := f.Do(context.Background(), "flush", 3, do); !errors.Is(err, open) || ran != 2 {
		t.Fatalf("refused: err %v ran %d", err, ran)
	}
}
