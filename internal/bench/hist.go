package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Hist is a log-linear latency histogram in the spirit of HdrHistogram: 64
// sub-buckets per power of two (≈1.6 % relative precision) from 1 ns up to
// 2^47 ns (≈39 h), in a fixed 21 KiB. Record is safe for concurrent use
// (one atomic add, plus a compare-and-swap only while the maximum grows).
type Hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histMaxBits = 47
	histBuckets = histSub + (histMaxBits-histSubBits)*histSub
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	n := bits.Len64(v)
	if n > histMaxBits {
		return histBuckets - 1
	}
	shift := n - histSubBits - 1
	return histSub + shift*histSub + int(v>>uint(shift)) - histSub
}

// histBounds returns the smallest and largest value of bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < histSub {
		return uint64(i), uint64(i)
	}
	shift := (i - histSub) / histSub
	m := uint64(i-histSub-shift*histSub) + histSub
	return m << uint(shift), (m+1)<<uint(shift) - 1
}

// Record adds one observation. Negative durations count as zero.
func (h *Hist) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[histIndex(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	storeMax(&h.max, v)
}

// Count returns the number of observations so far.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Quantile returns the value below which a fraction q of the observations
// fall (the middle of the bucket holding it, never above the maximum).
func (h *Hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	max := h.max.Load()
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := histBounds(i)
			v := lo + (hi-lo)/2
			if v > max {
				v = max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(max)
}

// Latency is a histogram summary as reported, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns the histogram's count, mean, percentiles and maximum.
func (h *Hist) Summary() Latency {
	n := h.n.Load()
	if n == 0 {
		return Latency{}
	}
	ms := func(d time.Duration) float64 { return round3(float64(d) / 1e6) }
	return Latency{
		Count: n,
		Mean:  round3(float64(h.sum.Load()) / float64(n) / 1e6),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(time.Duration(h.max.Load())),
	}
}

// shardedHist spreads hot recording over several histograms (readers pick a
// shard by their index) so that 10,000 readers on two cores do not bounce one
// cache line; Summary merges them.
type shardedHist struct{ shards [8]Hist }

func (s *shardedHist) Record(shard int, d time.Duration) { s.shards[shard&7].Record(d) }

func (s *shardedHist) merged() *Hist {
	var m Hist
	for i := range s.shards {
		sh := &s.shards[i]
		for j := range sh.counts {
			if c := sh.counts[j].Load(); c != 0 {
				m.counts[j].Add(c)
			}
		}
		m.n.Add(sh.n.Load())
		m.sum.Add(sh.sum.Load())
		if x := sh.max.Load(); x > m.max.Load() {
			m.max.Store(x)
		}
	}
	return &m
}

func (s *shardedHist) Summary() Latency { return s.merged().Summary() }

// Quantile of the merged shards.
func (s *shardedHist) Quantile(q float64) time.Duration { return s.merged().Quantile(q) }

func round3(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*1000) / 1000
}

func round1(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*10) / 10
}
