package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	line := []byte("1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 12 0 100 1000000 500 18446744073709551615\n")
	d, err := parseStatCPU(line, 100)
	if err != nil || d != 3800*time.Millisecond {
		t.Fatalf("got %v, %v; want 3.8s", d, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 x S"} {
		if _, err := parseStatCPU([]byte(bad), 100); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	kb, err := parseVmRSS([]byte("Name:\tx\nVmPeak:\t  2000 kB\nVmRSS:\t  1234 kB\nThreads: 3\n"))
	if err != nil || kb != 1234 {
		t.Fatalf("VmRSS: %d, %v", kb, err)
	}
	if _, err := parseVmRSS([]byte("Name: x\n")); err == nil {
		t.Error("no VmRSS: want an error")
	}
}

func TestProcSelf(t *testing.T) {
	if clockTicks() <= 0 {
		t.Fatal("no clock ticks")
	}
	w, err := newServerWatch(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	w.start()
	x := 0
	for i := 0; i < 1e6; i++ {
		x += i
	}
	_ = x
	r := w.finish(time.Second)
	if r.PID != os.Getpid() || r.RSSEndKiB <= 0 || r.RSSPeakKiB < r.RSSEndKiB || r.MeasurementProblem != "" {
		t.Fatalf("report %+v", r)
	}
	if _, err := newServerWatch(1 << 30); err == nil {
		t.Fatal("a missing pid: want an error")
	}
	if w, err := newServerWatch(0); w != nil || err != nil {
		t.Fatal("pid 0 means no watch")
	}
	var nilWatch *serverWatch
	nilWatch.start()
	if nilWatch.finish(time.Second) != nil || nilWatch.sample() != 0 {
		t.Fatal("nil watch must be inert")
	}
}
