package quiz

import (
	"sync/atomic"
	"time"
)

// Bucket is the per-node token bucket in front of the rain's grabs
// (--rain-rate): it admits rate grabs per second with a burst of a tenth of
// a second's worth (at least 1) and turns the rest away with one atomic
// load and, when admitted, one compare-and-swap: no lock, no allocation.
// It is the generic cell rate algorithm: tat is the theoretical arrival
// time of the next grab; a grab is admitted when tat is at most burst ahead
// of now.
type Bucket struct {
	interval int64 // ns per grab
	burst    int64 // ns of credit
	tat      atomic.Int64
	now      func() int64
}

// NewBucket admits rate grabs per second; rate ≤ 0 admits everything.
func NewBucket(rate int) *Bucket {
	b := &Bucket{now: func() int64 { return time.Now().UnixNano() }}
	if rate > 0 {
		b.interval = int64(time.Second) / int64(rate)
		b.burst = max(int64(time.Second)/10, b.interval)
	}
	return b
}

// Allow reports whether one more grab is admitted now.
func (b *Bucket) Allow() bool { return b.AllowN(1) == 1 }

// AllowN admits up to n grabs now (n ≥ 1) and returns how many: as many
// as the credit holds, each taking one interval of it, in one
// compare-and-swap; 0 costs one atomic load.
func (b *Bucket) AllowN(n int) int {
	if b.interval == 0 {
		return n
	}
	now := b.now()
	for {
		tat := b.tat.Load()
		base := max(tat, now)
		k := min(int64(n), (b.burst-(base-now))/b.interval)
		if k <= 0 {
			return 0
		}
		if b.tat.CompareAndSwap(tat, base+k*b.interval) {
			return int(k)
		}
	}
}
