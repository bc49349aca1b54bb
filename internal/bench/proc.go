package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// procCPU returns the CPU time (utime+stime) process pid has used, from
// /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b, clockTicks())
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/PID/stat
// line. The command name (field 2) is in parentheses and may hold spaces or
// parentheses itself, so fields are counted from the last ')'.
func parseStatCPU(b []byte, hz int64) (time.Duration, error) {
	p := bytes.LastIndexByte(b, ')')
	if p < 0 {
		return 0, errors.New("bench: malformed /proc stat")
	}
	f := bytes.Fields(b[p+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil || hz <= 0 {
		return 0, errors.New("bench: malformed /proc stat times")
	}
	return time.Duration((ut + st) * int64(time.Second) / hz), nil
}

// procRSS returns the resident set size of pid in KiB (VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(b []byte) (int64, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(string(f[0]), 10, 64)
		}
	}
	return 0, errors.New("bench: no VmRSS in /proc status")
}

var clockTicks = sync.OnceValue(func() int64 {
	// AT_CLKTCK (17) from the auxiliary vector; 100 on every Linux we know.
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		for i := 0; i+16 <= len(b); i += 16 {
			k := binary.NativeEndian.Uint64(b[i:])
			v := binary.NativeEndian.Uint64(b[i+8:])
			if k == 17 && v > 0 && v < 1e6 {
				return int64(v)
			}
			if k == 0 {
				break
			}
		}
	}
	return 100
})

// selfCPU is the bench process's own CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverWatch samples a server process given by --pid.
type serverWatch struct {
	pid       int
	rssBefore int64 // before any connection
	cpu0      time.Duration
	rss0      int64
	mu        sync.Mutex
	peak      int64
}

func newServerWatch(pid int) (*serverWatch, error) {
	if pid <= 0 {
		return nil, nil
	}
	rss, err := procRSS(pid)
	if err != nil {
		return nil, fmt.Errorf("bench: --pid %d: %w", pid, err)
	}
	if _, err := procCPU(pid); err != nil {
		return nil, fmt.Errorf("bench: --pid %d: %w", pid, err)
	}
	return &serverWatch{pid: pid, rssBefore: rss, peak: rss}, nil
}

// sample updates the RSS peak and returns the current RSS (0 on error).
func (w *serverWatch) sample() int64 {
	if w == nil {
		return 0
	}
	rss, err := procRSS(w.pid)
	if err != nil {
		return 0
	}
	w.mu.Lock()
	if rss > w.peak {
		w.peak = rss
	}
	w.mu.Unlock()
	return rss
}

// start marks the beginning of the measured window.
func (w *serverWatch) start() {
	if w == nil {
		return
	}
	w.cpu0, _ = procCPU(w.pid)
	w.rss0 = w.sample()
}

// ServerReport is what --pid measured of the server over the window, plus
// figures derived from it (zero when they do not apply).
type ServerReport struct {
	PID         int     `json:"pid"`
	CPUSeconds  float64 `json:"cpu_s"`   // utime+stime over the measured window
	CPUPercent  float64 `json:"cpu_pct"` // of one core, over the window
	RSSBaseKiB  int64   `json:"rss_before_kib"`
	RSSStartKiB int64   `json:"rss_start_kib"` // at the start of the window
	RSSEndKiB   int64   `json:"rss_end_kib"`
	RSSPeakKiB  int64   `json:"rss_peak_kib"`

	USPerDelivery      float64 `json:"us_cpu_per_delivery,omitempty"`
	DeliveriesPerCPUS  float64 `json:"deliveries_per_cpu_s,omitempty"`
	KiBPerConn         float64 `json:"kib_rss_per_conn,omitempty"`
	PollsPerCPUS       float64 `json:"polls_per_cpu_s,omitempty"`
	USPerPoll          float64 `json:"us_cpu_per_poll,omitempty"`
	USPerAck           float64 `json:"us_cpu_per_ack,omitempty"`
	CPUPercentPerView  float64 `json:"cpu_pct_per_viewer,omitempty"`
	KiBPerViewer       float64 `json:"kib_rss_per_viewer,omitempty"`
	IdleKiBPerConn     float64 `json:"idle_kib_rss_per_conn,omitempty"`
	IdleRSSSettledKiB  int64   `json:"idle_rss_settled_kib,omitempty"`
	IdleConnsMeasured  int     `json:"idle_conns,omitempty"`
	MeasurementProblem string  `json:"error,omitempty"`
}

// finish ends the window (of wall length window) and reports.
func (w *serverWatch) finish(window time.Duration) *ServerReport {
	if w == nil {
		return nil
	}
	r := &ServerReport{PID: w.pid, RSSBaseKiB: w.rssBefore, RSSStartKiB: w.rss0}
	cpu, err := procCPU(w.pid)
	if err != nil {
		r.MeasurementProblem = err.Error()
		return r
	}
	r.RSSEndKiB = w.sample()
	w.mu.Lock()
	r.RSSPeakKiB = w.peak
	w.mu.Unlock()
	d := cpu - w.cpu0
	r.CPUSeconds = round3(d.Seconds())
	if window > 0 {
		r.CPUPercent = round1(100 * d.Seconds() / window.Seconds())
	}
	return r
}

// perUnit returns num/den, or 0 when den is 0.
func perUnit(num, den float64) float64 {
	if den == 0 {
		return 0
	}
	return num / den
}

// ProcessCPU is the CPU time (user + system) process pid has used so far,
// from /proc/PID/stat.
func ProcessCPU(pid int) (time.Duration, error) { return procCPU(pid) }
