package likes

import (
	"context"
	"sync"
	"testing"
	"time"

	"roomcast/internal/testutil"
)

// factory builds a fresh Counter for one contract sub-test; it closes it
// after the test.
type factory func(t *testing.T) Counter

// runContract is the contract every Counter implementation passes: totals
// are exact under concurrent adds, each Add returns the total it made, and
// rooms count apart.
func runContract(t *testing.T, newCounter factory) {
	t.Run("AddAndTotal", func(t *testing.T) { contractAddAndTotal(t, newCounter) })
	t.Run("ConcurrentAddsExact", func(t *testing.T) { contractConcurrentAddsExact(t, newCounter) })
}

func contractAddAndTotal(t *testing.T, newCounter factory) {
	ctx := context.Background()
	c := newCounter(t)
	if n, err := c.Total(ctx, "r"); n != 0 || err != nil {
		t.Fatalf("empty total %d %v", n, err)
	}
	for i := int64(1); i <= 3; i++ {
		if n, err := c.Add(ctx, "r", 2); n != 2*i || err != nil {
			t.Fatalf("add %d: total %d %v", i, n, err)
		}
	}
	if n, err := c.Add(ctx, "other", 5_000_000_000); n != 5_000_000_000 || err != nil {
		t.Fatalf("large add %d %v", n, err)
	}
	if n, err := c.Total(ctx, "r"); n != 6 || err != nil {
		t.Fatalf("total %d %v", n, err)
	}
}

func contractConcurrentAddsExact(t *testing.T, newCounter factory) {
	ctx := context.Background()
	c := newCounter(t)
	const workers, each = 8, 50
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				n, err := c.Add(ctx, "hot", 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[n] {
					t.Errorf("total %d returned twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for n := int64(1); n <= workers*each; n++ {
		if !seen[n] {
			t.Fatalf("no Add returned total %d", n)
		}
	}
	// A total read meanwhile may be cached for a moment; it converges.
	testutil.WaitFor(t, "the exact total", 10*time.Second, func() bool {
		n, err := c.Total(ctx, "hot")
		return err == nil && n == workers*each
	})
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T) Counter {
		c := NewMemory()
		t.Cleanup(func() { c.Close() })
		return c
	})
}
