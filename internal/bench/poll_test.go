package bench

import (
	"errors"
	"testing"
)

func TestBenchPoll(t *testing.T) {
	for _, interval := range []string{"0", "auto", "30ms"} {
		t.Run(interval, func(t *testing.T) {
			f := newFakeServer(t, nil)
			// Some history first, for the warm start.
			f.mu.Lock()
			for i := 0; i < 12; i++ {
				f.appendMsg("old", "before")
			}
			f.mu.Unlock()
			rep, err := runBench(t, f, "poll", "--pollers", "8", "--ramp", "0", "--interval", interval, "--limit", "4",
				"--duration", "600ms", "--send-rate", "40", "--senders", "2", "--secret", "x", "--pid", itoa(osPid()))
			if err != nil {
				t.Fatalf("err %v violations %v", err, rep.Violations)
			}
			p, d, s, sq := rep.Poll, rep.Delivery, rep.Send, rep.Seq
			if p.Requests == 0 || len(p.Errors) != 0 || p.Latency.Count == 0 || p.Pollers != 8 {
				t.Fatalf("poll %+v", p)
			}
			if interval == "auto" && (p.PollAfterMin != 20 || p.PollAfterMax != 20) {
				t.Fatalf("poll_after_ms %d..%d", p.PollAfterMin, p.PollAfterMax)
			}
			if s.Acked == 0 || d.BenchMessages != s.Acked*8 || d.Lost != 0 {
				t.Fatalf("delivery %+v send %+v", d, s)
			}
			if sq.Gaps+sq.Dups+sq.Reorders+sq.Resets != 0 || sq.Behind != 0 || sq.LastAcked == 0 {
				t.Fatalf("seq %+v", sq)
			}
			if rep.Server == nil || rep.Server.PID != osPid() {
				t.Fatalf("server %+v", rep.Server)
			}
		})
	}
}

func TestBenchPollGap(t *testing.T) {
	f := newFakeServer(t, func(f *fakeServer) { f.gapOnce = true })
	rep, err := runBench(t, f, "poll", "--pollers", "3", "--ramp", "0", "--interval", "50ms",
		"--duration", "600ms", "--send-rate", "60", "--token", "t")
	if !errors.Is(err, ErrChecksFailed) || rep.Seq.Gaps != 1 || rep.Seq.Missing != 1 {
		t.Fatalf("err %v seq %+v", err, rep.Seq)
	}
}

func TestBenchPollErrors(t *testing.T) {
	f := newFakeServer(t, nil)
	rep, err := runBench(t, f, "poll", "--pollers", "2", "--ramp", "0", "--interval", "0", "--duration", "200ms",
		"--url", f.srv.URL+"/nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Poll.Errors["404"] == 0 || rep.Poll.Requests != 0 {
		t.Fatalf("poll %+v", rep.Poll)
	}
}
