package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBenchWS(t *testing.T) {
	for _, via := range []string{"http", "ws"} {
		t.Run(via, func(t *testing.T) {
			f := newFakeServer(t, nil)
			rep, err := runBench(t, f, "ws", "--conns", "20", "--ramp", "0", "--settle", "0s", "--duration", "700ms", "--drain", "5s",
				"--send-rate", "60", "--senders", "3", "--send-via", via, "--secret", "s3cret", "--pid", itoa(osPid()))
			if err != nil {
				t.Fatalf("err %v, violations %v", err, rep.Violations)
			}
			c, d, s, sq := rep.Conns, rep.Delivery, rep.Send, rep.Seq
			if c.Connected != 20 || c.Failed != 0 || c.Dropped != 0 || c.Connect.Count != 20 {
				t.Fatalf("conns %+v", c)
			}
			if s.Acked == 0 || s.DupSeqs != 0 || s.Acked != uint64(s.MaxSeq-s.MinSeq+1) || len(s.Errors) != 0 {
				t.Fatalf("send %+v", s)
			}
			if d.BenchMessages != s.Acked*20 || d.Lost != 0 || d.Latency.Count != d.BenchMessages || d.Messages < d.BenchMessages {
				t.Fatalf("delivery %+v (acked %d)", d, s.Acked)
			}
			if sq.Gaps+sq.Dups+sq.Reorders != 0 || sq.Behind != 0 || sq.LastAcked != s.MaxSeq || sq.Mode != "strict" {
				t.Fatalf("seq %+v", sq)
			}
			if rep.Server == nil || rep.Server.PID != osPid() || rep.Server.RSSEndKiB == 0 {
				t.Fatalf("server %+v", rep.Server)
			}
			if rep.Params["secret"] != "(set)" {
				t.Fatalf("secret not redacted: %v", rep.Params["secret"])
			}
		})
	}
}

func TestBenchWSFaults(t *testing.T) {
	cases := []struct {
		name      string
		configure func(*fakeServer)
		allow     bool
		check     func(*Report) bool
	}{
		{"gap", func(f *fakeServer) { f.gapOnce = true }, false, func(r *Report) bool { return r.Seq.Gaps == 1 && r.Seq.Missing >= 1 }},
		{"dup", func(f *fakeServer) { f.dupOnce = true }, true, func(r *Report) bool { return r.Seq.Dups == 1 }},
		{"reorder", func(f *fakeServer) { f.reorderOnce = true }, true, func(r *Report) bool { return r.Seq.Reorders == 1 }},
		{"drop", func(f *fakeServer) { f.dropOnce = true }, false, func(r *Report) bool {
			// The reader reconnects with its cursor and misses nothing.
			return r.Conns.Dropped == 1 && r.Conns.Reconnects == 1 && r.Conns.CloseReasons["4000 slow reader"] == 1 &&
				r.Seq.Gaps == 0 && r.Seq.Dups == 0 && r.Delivery.Lost == 0
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeServer(t, func(f *fakeServer) {
				f.tick = 60 * time.Millisecond // several messages per batch
				c.configure(f)
			})
			args := []string{"ws", "--conns", "5", "--ramp", "0", "--settle", "0s", "--duration", "600ms", "--drain", "5s",
				"--send-rate", "50", "--token", "tok"}
			if c.allow {
				args = append(args, "--allow-gaps")
			}
			rep, err := runBench(t, f, args...)
			if !errors.Is(err, ErrChecksFailed) {
				t.Fatalf("want failed checks, got %v", err)
			}
			if !c.check(rep) || rep.OK || len(rep.Violations) == 0 {
				t.Fatalf("report: conns %+v seq %+v delivery %+v violations %v", rep.Conns, rep.Seq, rep.Delivery, rep.Violations)
			}
		})
	}
}

func TestBenchWSAllowGapsIgnoresGaps(t *testing.T) {
	f := newFakeServer(t, func(f *fakeServer) { f.gapOnce = true })
	rep, err := runBench(t, f, "ws", "--conns", "5", "--ramp", "0", "--settle", "0s", "--duration", "500ms", "--drain", "5s",
		"--send-rate", "50", "--allow-gaps")
	if err != nil || rep.Seq.Gaps != 0 || rep.Seq.Mode != "allow-gaps" {
		t.Fatalf("err %v seq %+v", err, rep.Seq)
	}
	f.mu.Lock()
	guests := f.guests
	f.mu.Unlock()
	if guests != 1 {
		t.Fatalf("without --token or --secret the sender should use a guest token; %d fetched", guests)
	}
}

func TestBenchWSIdle(t *testing.T) {
	f := newFakeServer(t, nil)
	rep, err := runBench(t, f, "ws", "--conns", "10", "--ramp", "0", "--idle", "--settle", "100ms",
		"--duration", "200ms", "--pid", itoa(osPid()), "--ping", "50ms")
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Server
	if s == nil || s.IdleConnsMeasured != 10 || s.IdleRSSSettledKiB == 0 || rep.Send != nil {
		t.Fatalf("server %+v send %+v", s, rep.Send)
	}
}

func TestBenchWSRefused(t *testing.T) {
	f := newFakeServer(t, nil)
	rep, err := runBench(t, f, "ws", "--conns", "3", "--ramp", "0", "--settle", "0s", "--duration", "100ms", "--room", "nope")
	if !errors.Is(err, ErrChecksFailed) || rep.Conns.Failed != 3 || rep.Conns.Errors["status 404"] != 3 {
		t.Fatalf("err %v conns %+v", err, rep.Conns)
	}
	if !strings.Contains(rep.Violations[0], "failed connection") {
		t.Fatalf("violations %v", rep.Violations)
	}
}
