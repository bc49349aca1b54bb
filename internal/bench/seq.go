package bench

import (
	"sync/atomic"
	"time"
)

// seqCounts accumulates sequence violations over all readers. Violations are
// rare, so shared atomics cost nothing on the per-message path.
type seqCounts struct {
	gaps      atomic.Uint64 // times a reader's seq jumped forward by more than 1
	missing   atomic.Uint64 // seqs skipped by those jumps (and not seen later)
	dups      atomic.Uint64 // seqs seen twice
	reorders  atomic.Uint64 // seqs that arrived after a higher one
	resets    atomic.Uint64 // "reset":true answers (polling)
	cursorBak atomic.Uint64 // a cursor lower than the last seq seen
}

// seqCheck follows one reader's sequence. It remembers which of the last 64
// seqs were seen, so a late seq is told apart from a duplicate.
type seqCheck struct {
	first   uint64 // where this reader started: holes above it were counted
	last    uint64
	window  uint64 // bit d set: seq last-d was seen
	started bool
}

// observe checks one delivered message's seq. Seq 0 (user-scoped messages)
// is not part of a room's sequence and is ignored. With allowGaps (a render
// budget drops messages on purpose) forward jumps are not counted.
func (s *seqCheck) observe(seq uint64, c *seqCounts, allowGaps bool) {
	if seq == 0 {
		return
	}
	if !s.started {
		s.started, s.first, s.last, s.window = true, seq, seq, 1
		return
	}
	if seq > s.last {
		d := seq - s.last
		if d > 1 && !allowGaps {
			c.gaps.Add(1)
			c.missing.Add(d - 1)
		}
		s.shift(d)
		s.window |= 1
		s.last = seq
		return
	}
	d := s.last - seq
	if d < 64 && s.window&(1<<d) != 0 {
		c.dups.Add(1)
		return
	}
	c.reorders.Add(1)
	if d < 64 {
		s.window |= 1 << d
		if !allowGaps && seq > s.first {
			c.missing.Add(^uint64(0)) // it fills a hole counted as missing
		}
	}
}

// advance moves the reader to a cursor the server says it has considered
// (the "cursor" of a batch or poll answer). With an unlimited budget the
// cursor is the last seq delivered, so a cursor beyond it is a skip.
func (s *seqCheck) advance(cursor uint64, c *seqCounts, allowGaps bool) {
	if !s.started {
		// Nothing seen yet: the cursor is where this reader starts.
		s.started, s.first, s.last, s.window = true, cursor, cursor, 1
		return
	}
	switch {
	case cursor > s.last:
		d := cursor - s.last
		if !allowGaps {
			c.gaps.Add(1)
			c.missing.Add(d)
		}
		s.shift(d)
		s.window |= 1 // seq == cursor counts as considered
		s.last = cursor
	case cursor < s.last:
		c.cursorBak.Add(1)
	}
}

// rebase starts over after a "reset":true answer.
// publish stores the last seq s saw (for the tail check), once it saw
// one.
func (s *seqCheck) publish(last *atomic.Uint64) {
	if s.started {
		last.Store(s.last)
	}
}

func (s *seqCheck) rebase() { *s = seqCheck{} }

func (s *seqCheck) shift(d uint64) {
	if d >= 64 {
		s.window = 0
	} else {
		s.window <<= d
	}
}

// SeqReport is the sequence check over every reader.
type SeqReport struct {
	Mode      string `json:"mode"` // "strict" (unlimited render budget) or "allow-gaps"
	Readers   int    `json:"readers"`
	Gaps      uint64 `json:"gaps"`
	Missing   uint64 `json:"missing"`
	Dups      uint64 `json:"duplicates"`
	Reorders  uint64 `json:"reorders"`
	Resets    uint64 `json:"resets"`
	CursorBak uint64 `json:"cursor_regressions"`
	// Readers whose last seq, after the drain, is below the highest seq the
	// server acknowledged to the bench's senders (strict mode; tail loss).
	Behind     int    `json:"behind_readers"`
	BehindSeqs uint64 `json:"behind_seqs"`
	LastAcked  uint64 `json:"last_acked_seq"`
}

func (c *seqCounts) report(allowGaps bool, readers int) SeqReport {
	mode := "strict"
	if allowGaps {
		mode = "allow-gaps"
	}
	return SeqReport{
		Mode: mode, Readers: readers,
		Gaps: c.gaps.Load(), Missing: c.missing.Load(), Dups: c.dups.Load(),
		Reorders: c.reorders.Load(), Resets: c.resets.Load(), CursorBak: c.cursorBak.Load(),
	}
}

// violations lists what failed in r.
func (r SeqReport) violations() []string {
	var v []string
	add := func(n uint64, what string) {
		if n > 0 {
			v = append(v, plural(n, what))
		}
	}
	if r.Mode == "strict" {
		add(r.Gaps, "sequence gap")
		add(uint64(r.Behind), "reader%s behind the last acknowledged seq")
	}
	add(r.Dups, "duplicate")
	add(r.Reorders, "reordering")
	add(r.CursorBak, "cursor regression")
	return v
}

// readerChecks is what the readers of one run (WebSocket connections or
// pollers) share to check what they receive.
type readerChecks struct {
	allowGaps bool        // a render budget is on: gaps do not count
	since     int64       // bench messages sent before this (Unix ns) are not ours
	seq       seqCounts   // sequence violations over every reader
	lat       shardedHist // send→receive of bench messages
}

// batch checks one batch of messages a reader got: each seq, then the
// batch's cursor, against sc, and the send→receive latency of the bench
// messages (recorded in shard). It returns how many bench messages the batch
// held.
func (rc *readerChecks) batch(fi *frameInfo, sc *seqCheck, shard int) (bench uint64) {
	var now int64
	for _, m := range fi.msgs {
		sc.observe(m.seq, &rc.seq, rc.allowGaps)
		if m.sent >= rc.since {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			rc.lat.Record(shard, time.Duration(now-m.sent))
			bench++
		}
	}
	if fi.hasCursor {
		sc.advance(fi.cursor, &rc.seq, rc.allowGaps)
	}
	return bench
}
