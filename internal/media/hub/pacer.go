package hub

import (
	"context"
	"time"
)

// Pacer spaces one viewer's writes by a fixed delay so each write carries
// more frames (fewer syscalls and wake-ups per viewer). The zero delay does
// not wait. Its timer is reused: one wake-up per delay, not per frame.
type Pacer struct {
	d time.Duration
	t *time.Timer
}

// NewPacer returns a Pacer waiting d between writes.
func NewPacer(d time.Duration) *Pacer { return &Pacer{d: d} }

// Wait blocks for the delay, until early is closed (a key frame or enough
// bytes are queued: Reader.Flush), or until ctx ends.
func (p *Pacer) Wait(ctx context.Context, early <-chan struct{}) {
	if p.d <= 0 {
		return
	}
	if p.t == nil {
		p.t = time.NewTimer(p.d)
	} else {
		p.t.Reset(p.d)
	}
	select {
	case <-p.t.C:
	case <-early:
		p.t.Stop()
	case <-ctx.Done():
		p.t.Stop()
	}
}
