package transcode

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	cpuDesc = prometheus.NewDesc("roomcast_transcode_cpu_seconds_total",
		"CPU time (user+system) of a live room's quality-ladder ffmpeg processes.", []string{"room"}, nil)
	runningDesc = prometheus.NewDesc("roomcast_transcode_processes",
		"Quality-ladder ffmpeg processes running now.", nil, nil)
)

// collector reads the children's CPU at scrape time: ended processes from
// their rusage, the running one from /proc/PID/stat.
type collector struct{ l *Ladder }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cpuDesc
	ch <- runningDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.l.mu.Lock()
	children := make(map[string]*child, len(c.l.running))
	for room, k := range c.l.running {
		children[room] = k
	}
	c.l.mu.Unlock()
	running := 0
	for room, k := range children {
		k.mu.Lock()
		cpu, pid := k.cpuDone, k.pid
		k.mu.Unlock()
		if pid != 0 {
			running++
			cpu += procCPU(pid)
		}
		ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.CounterValue, cpu.Seconds(), room)
	}
	ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(running))
}

// clockTicks is USER_HZ, 100 on every Linux Go runs on.
const clockTicks = 100

// procCPU reads utime+stime of pid from /proc (0 where there is no /proc).
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 { // fields 3.. after comm: utime is the 14th overall, 12th here (0-based 11)
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}
