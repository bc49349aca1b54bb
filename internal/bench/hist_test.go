package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestHistIndexBounds(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 1<<20 + 12345, 1<<47 - 1} {
		i := histIndex(v)
		lo, hi := histBounds(i)
		if v < lo || v > hi {
			t.Errorf("value %d: bucket %d holds [%d,%d]", v, i, lo, hi)
		}
		if i < prev {
			t.Errorf("index not monotonic at %d", v)
		}
		prev = i
		if v >= 64 && float64(hi-lo)/float64(lo) > 1.0/64+1e-9 {
			t.Errorf("bucket %d too wide: [%d,%d]", i, lo, hi)
		}
	}
	if i := histIndex(math.MaxUint64); i != histBuckets-1 {
		t.Errorf("huge value in bucket %d", i)
	}
	for i := 1; i < histBuckets; i++ {
		_, phi := histBounds(i - 1)
		lo, _ := histBounds(i)
		if lo != phi+1 {
			t.Fatalf("buckets %d and %d not contiguous: %d then %d", i-1, i, phi, lo)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, 100000)
	for i := range vals {
		d := time.Duration(r.ExpFloat64() * float64(20*time.Millisecond))
		vals[i] = float64(d)
		h.Record(d)
	}
	sort.Float64s(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := float64(h.Quantile(q))
		if math.Abs(got-want)/want > 0.02 {
			t.Errorf("q%.3f = %v, want %v ±2%%", q, time.Duration(got), time.Duration(want))
		}
	}
	s := h.Summary()
	if s.Count != uint64(len(vals)) || s.Max != round3(vals[len(vals)-1]/1e6) {
		t.Errorf("summary %+v", s)
	}
	var empty Hist
	if empty.Quantile(0.5) != 0 || empty.Summary() != (Latency{}) {
		t.Error("empty histogram not zero")
	}
	empty.Record(-5)
	if empty.Quantile(1) != 0 {
		t.Error("negative not clamped to 0")
	}
}

func TestShardedHistConcurrent(t *testing.T) {
	var s shardedHist
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 1000; i++ {
				s.Record(g, time.Duration(i)*time.Microsecond)
			}
		}()
	}
	wg.Wait()
	sum := s.Summary()
	if sum.Count != 16000 || sum.Max != 1 {
		t.Errorf("summary %+v", sum)
	}
	if p := sum.P50; p < 0.49 || p > 0.51 {
		t.Errorf("p50 %v ms, want ≈0.5", p)
	}
}
