package bench

import "testing"

func TestSeqCheck(t *testing.T) {
	type want struct{ gaps, missing, dups, reorders uint64 }
	cases := []struct {
		name  string
		seqs  []uint64
		allow bool
		want  want
	}{
		{"clean", []uint64{5, 6, 7, 8}, false, want{}},
		{"user scoped ignored", []uint64{5, 0, 6, 0, 7}, false, want{}},
		{"gap", []uint64{1, 2, 5, 6}, false, want{gaps: 1, missing: 2}},
		{"gap allowed", []uint64{1, 2, 5, 6}, true, want{}},
		{"dup", []uint64{1, 2, 2, 3}, false, want{dups: 1}},
		{"dup older", []uint64{1, 2, 3, 4, 2}, true, want{dups: 1}},
		{"reorder", []uint64{1, 3, 2, 4}, false, want{gaps: 1, missing: 0, reorders: 1}},
		{"reorder allowed", []uint64{1, 3, 2, 4}, true, want{reorders: 1}},
		{"late start then earlier", []uint64{10, 9, 11}, false, want{reorders: 1}},
		{"big jump", []uint64{1, 200, 2}, false, want{gaps: 1, missing: 198, reorders: 1}},
	}
	for _, c := range cases {
		var s seqCheck
		var n seqCounts
		for _, q := range c.seqs {
			s.observe(q, &n, c.allow)
		}
		got := want{n.gaps.Load(), n.missing.Load(), n.dups.Load(), n.reorders.Load()}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestSeqAdvance(t *testing.T) {
	var s seqCheck
	var n seqCounts
	s.advance(10, &n, false) // warm start: nothing seen, cursor 10
	s.observe(11, &n, false)
	s.advance(11, &n, false)
	s.observe(12, &n, false)
	if n.gaps.Load() != 0 {
		t.Fatalf("clean run counted %d gaps", n.gaps.Load())
	}
	s.advance(15, &n, false) // cursor skipped 13..15
	if n.gaps.Load() != 1 || n.missing.Load() != 3 {
		t.Fatalf("gaps %d missing %d, want 1 and 3", n.gaps.Load(), n.missing.Load())
	}
	s.observe(15, &n, false) // delivered after its cursor: a duplicate
	if n.dups.Load() != 1 {
		t.Fatalf("dups %d", n.dups.Load())
	}
	s.advance(14, &n, false)
	if n.cursorBak.Load() != 1 {
		t.Fatal("cursor regression not counted")
	}
	var a seqCheck
	var m seqCounts
	a.observe(3, &m, true)
	a.advance(9, &m, true) // budget skipped 4..9: fine
	a.observe(10, &m, true)
	if r := m.report(true, 1); len(r.violations()) != 0 {
		t.Fatalf("allow-gaps violations: %v", r.violations())
	}
	s.rebase()
	if s.started {
		t.Fatal("rebase kept state")
	}
}
