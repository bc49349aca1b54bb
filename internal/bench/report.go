package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one scenario, printed as a table or (--json) as
// JSON. Sections that do not apply to a scenario are omitted.
type Report struct {
	Scenario    string            `json:"scenario"` // ws, poll, send, flv
	StartedAt   time.Time         `json:"started_at"`
	Target      string            `json:"target"`
	Room        string            `json:"room,omitempty"`
	Params      map[string]string `json:"params"` // every flag, secrets redacted
	RampS       float64           `json:"ramp_s"`
	WindowS     float64           `json:"window_s"` // measured window (rates are per second of it)
	DrainS      float64           `json:"drain_s"`
	Interrupted bool              `json:"interrupted,omitempty"`

	Conns    *ConnReport     `json:"conns,omitempty"`
	Delivery *DeliveryReport `json:"delivery,omitempty"`
	Poll     *PollReport     `json:"poll,omitempty"`
	Send     *SendReport     `json:"send,omitempty"`
	Seq      *SeqReport      `json:"seq,omitempty"`
	FLV      *FLVReport      `json:"flv,omitempty"`
	Quiz     *QuizReport     `json:"quiz,omitempty"`
	Rain     *RainReport     `json:"rain,omitempty"`
	Server   *ServerReport   `json:"server,omitempty"`
	Client   ClientReport    `json:"client"`

	Violations []string `json:"violations"` // failed checks; empty when OK
	OK         bool     `json:"ok"`
}

// ConnReport covers connection set-up and loss.
type ConnReport struct {
	Target       int               `json:"target"`
	Connected    int               `json:"connected"`
	Failed       int               `json:"failed"`
	ConnectsPerS float64           `json:"connects_per_s"`
	Connect      Latency           `json:"connect"` // dial to handshake done
	Errors       map[string]uint64 `json:"errors,omitempty"`
	Dropped      uint64            `json:"dropped"` // connections lost during the run
	Reconnects   uint64            `json:"reconnects"`
	CloseReasons map[string]uint64 `json:"close_reasons,omitempty"` // server close frames: "code reason"
}

// DeliveryReport covers messages received by the readers during the window
// and the drain.
type DeliveryReport struct {
	Messages      uint64  `json:"messages"` // every message delivered to every reader
	PerS          float64 `json:"messages_per_s"`
	Frames        uint64  `json:"frames,omitempty"`
	BenchMessages uint64  `json:"bench_messages"` // this run's messages received
	Expected      uint64  `json:"expected_bench_messages"`
	Lost          uint64  `json:"lost"`    // expected - received, when positive
	Latency       Latency `json:"latency"` // send→receive of this run's messages
	BadFrames     uint64  `json:"bad_frames,omitempty"`
	ErrorFrames   uint64  `json:"error_frames,omitempty"`
	// Format is the readers' encoding (json, proto); Bytes the WebSocket
	// payload bytes they received in the window (every data message,
	// counts and answers included), per delivered message in
	// BytesPerDelivery.
	Format           string  `json:"format,omitempty"`
	Bytes            uint64  `json:"bytes,omitempty"`
	BytesPerDelivery float64 `json:"bytes_per_delivery,omitempty"`
}

// ClientReport is the bench process's own cost, to judge how much of the
// machine the load generator took from the server.
type ClientReport struct {
	CPUSeconds float64 `json:"cpu_s"`
	CPUPercent float64 `json:"cpu_pct"`
	Goroutines int     `json:"goroutines_peak"`
	GOMAXPROCS int     `json:"gomaxprocs"`
}

// clientMeter measures the bench process over a run.
type clientMeter struct {
	t0   time.Time
	cpu0 time.Duration
	peak int
}

func newClientMeter() *clientMeter { return &clientMeter{t0: time.Now(), cpu0: selfCPU()} }

func (m *clientMeter) sample() {
	if n := runtime.NumGoroutine(); n > m.peak {
		m.peak = n
	}
}

func (m *clientMeter) report() ClientReport {
	m.sample()
	d := selfCPU() - m.cpu0
	return ClientReport{
		CPUSeconds: round3(d.Seconds()),
		CPUPercent: round1(100 * d.Seconds() / time.Since(m.t0).Seconds()),
		Goroutines: m.peak,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
}

// finish sets OK, prints r and returns ErrChecksFailed when checks failed.
func (r *Report) finish(asJSON bool, stdout io.Writer) error {
	if r.Violations == nil {
		r.Violations = []string{}
	}
	r.OK = len(r.Violations) == 0
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		r.table(stdout)
	}
	if !r.OK {
		return fmt.Errorf("%w: %s", ErrChecksFailed, strings.Join(r.Violations, ", "))
	}
	return nil
}

func (r *Report) table(w io.Writer) {
	t := table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.sec(fmt.Sprintf("roomcast bench %s  %s  %s", r.Scenario, r.Target, r.StartedAt.Format(time.RFC3339)))
	t.row("window", "%.1fs (ramp %.1fs, drain %.1fs)%s", r.WindowS, r.RampS, r.DrainS, map[bool]string{true: "  INTERRUPTED"}[r.Interrupted])
	if c := r.Conns; c != nil {
		t.conns(c)
	}
	if s := r.Send; s != nil {
		t.send(s)
	}
	if p := r.Poll; p != nil {
		t.sec("polling")
		t.row("pollers", "%d, interval %s, limit %d", p.Pollers, p.Interval, p.Limit)
		t.row("requests", "%d  (%.1f/s, %d empty)", p.Requests, p.PerS, p.Empty)
		t.lat("latency", p.Latency)
		t.errs("errors", p.Errors)
		t.row("poll_after_ms", "min %d  max %d", p.PollAfterMin, p.PollAfterMax)
	}
	if d := r.Delivery; d != nil {
		t.sec("delivery")
		t.row("messages", "%d  (%.1f/s, %d frames)", d.Messages, d.PerS, d.Frames)
		t.row("bench messages", "%d of %d expected (lost %d)", d.BenchMessages, d.Expected, d.Lost)
		t.lat("send→receive", d.Latency)
		if d.BadFrames+d.ErrorFrames > 0 {
			t.row("bad / error frames", "%d / %d", d.BadFrames, d.ErrorFrames)
		}
	}
	if s := r.Seq; s != nil {
		t.sec("sequence (" + s.Mode + ")")
		t.row("readers", "%d", s.Readers)
		t.row("gaps / missing", "%d / %d", s.Gaps, s.Missing)
		t.row("dups / reorders", "%d / %d", s.Dups, s.Reorders)
		t.row("resets", "%d", s.Resets)
		t.row("behind at end", "%d readers, %d seqs (last acked %d)", s.Behind, s.BehindSeqs, s.LastAcked)
	}
	if f := r.FLV; f != nil {
		t.flv(f)
	}
	if q := r.Quiz; q != nil {
		t.quiz(q)
	}
	if q := r.Rain; q != nil {
		t.rain(q)
	}
	if s := r.Server; s != nil {
		t.server(s)
	}
	t.sec("bench client")
	t.row("cpu", "%.3fs  (%.1f%% of a core, GOMAXPROCS %d, %d goroutines)", r.Client.CPUSeconds, r.Client.CPUPercent, r.Client.GOMAXPROCS, r.Client.Goroutines)
	if len(r.Violations) == 0 {
		t.sec("result: OK")
	} else {
		t.sec("result: FAILED — " + strings.Join(r.Violations, "; "))
	}
	t.Flush()
}

// table prints a report's sections: a heading, then indented rows of a key
// and its figures, aligned.
type table struct{ *tabwriter.Writer }

func (t table) row(k string, format string, a ...any) {
	fmt.Fprintf(t, "  %s\t"+format+"\n", append([]any{k}, a...)...)
}

func (t table) sec(s string) { fmt.Fprintf(t, "%s\n", s) }

func (t table) lat(k string, l Latency) {
	if l.Count == 0 {
		t.row(k, "-")
		return
	}
	t.row(k, "p50 %s  p90 %s  p99 %s  max %s  (n=%d)", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), l.Count)
}

func (t table) errs(k string, m map[string]uint64) {
	if len(m) == 0 {
		t.row(k, "none")
		return
	}
	var parts []string
	for _, e := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s ×%d", e, m[e]))
	}
	t.row(k, "%s", strings.Join(parts, ", "))
}

func (t table) conns(c *ConnReport) {
	t.sec("connections")
	t.row("connected", "%d / %d  (failed %d, %.0f/s)", c.Connected, c.Target, c.Failed, c.ConnectsPerS)
	t.lat("connect time", c.Connect)
	if len(c.Errors) > 0 {
		t.errs("connect errors", c.Errors)
	}
	t.row("dropped", "%d  (reconnects %d)", c.Dropped, c.Reconnects)
	if len(c.CloseReasons) > 0 {
		t.errs("close reasons", c.CloseReasons)
	}
}

func (t table) send(s *SendReport) {
	t.sec("sending")
	rate := "as fast as possible"
	if s.TargetRate > 0 {
		rate = fmt.Sprintf("%.0f/s target", s.TargetRate)
	}
	t.row("writers", "%d via %s, %s", s.Writers, s.Via, rate)
	t.row("sent / acked", "%d / %d  (%.1f acks/s)", s.Sent, s.Acked, s.AcksPerS)
	t.lat("send→ack", s.Latency)
	t.errs("errors", s.Errors)
	t.row("seqs", "%d..%d, %d duplicate", s.MinSeq, s.MaxSeq, s.DupSeqs)
}

func (t table) flv(f *FLVReport) {
	t.sec(f.Proto + " viewers")
	t.row("url", "%s", f.URL)
	t.row("viewers", "%d / %d  (failed %d, ended early %d)", f.Connected, f.Viewers, f.Failed, f.EndedEarly)
	if len(f.Errors) > 0 {
		t.errs("errors", f.Errors)
	}
	t.lat("first byte", f.FirstByte)
	t.lat("first keyframe", f.FirstKeyframe)
	t.row("stream bitrate", "%.0f kbit/s (%s)", f.StreamKbps, f.StreamSource)
	d := f.ViewerKbps
	t.row("viewer kbit/s", "min %.0f  p10 %.0f  p50 %.0f  p90 %.0f  max %.0f  (n=%d)", d.Min, d.P10, d.P50, d.P90, d.Max, d.N)
	d = f.MediaSpeed
	t.row("media speed", "min %.3f  p10 %.3f  p50 %.3f  max %.3f", d.Min, d.P10, d.P50, d.Max)
	t.row("stalled", "%d  (below %.0f%% of the stream bitrate)", f.Stalled, f.StallRatio*100)
	var sp []string
	for _, k := range sortedKeys(f.StartProblems) {
		sp = append(sp, fmt.Sprintf("%s ×%d", k, f.StartProblems[k]))
	}
	if len(sp) == 0 {
		sp = []string{"none"}
	}
	t.row("start problems", "%s  (no keyframe %d)", strings.Join(sp, ", "), f.NoKeyframe)
	t.row("ts regressions", "%d viewers  (audio w/o seq header %d)", f.TSBack, f.AudioNoSeqHdr)
	t.row("received", "%.1f MiB", f.ReceivedMiB)
	if f.Forwarding != nil {
		t.lat("forwarding", *f.Forwarding)
		t.row("unmatched", "%d tags, %d viewers", f.ForwardingUnmatched, f.ForwardingNoBase)
		t.lat("publisher late", *f.PublisherLate)
	}
	if f.PublisherErr != "" {
		t.row("publisher", "%s", f.PublisherErr)
	}
}

func (t table) server(s *ServerReport) {
	t.sec(fmt.Sprintf("server (pid %d)", s.PID))
	if s.MeasurementProblem != "" {
		t.row("error", "%s", s.MeasurementProblem)
	}
	t.row("cpu", "%.3fs  (%.1f%% of a core)", s.CPUSeconds, s.CPUPercent)
	t.row("rss", "before %s  start %s  end %s  peak %s", kib(s.RSSBaseKiB), kib(s.RSSStartKiB), kib(s.RSSEndKiB), kib(s.RSSPeakKiB))
	opt := func(k string, v float64, f string) {
		if v != 0 {
			t.row(k, f, v)
		}
	}
	opt("µs cpu / delivery", s.USPerDelivery, "%.3f")
	opt("deliveries / cpu-s", s.DeliveriesPerCPUS, "%.0f")
	opt("KiB rss / conn", s.KiBPerConn, "%.2f")
	opt("idle KiB rss / conn", s.IdleKiBPerConn, "%.2f")
	opt("polls / cpu-s", s.PollsPerCPUS, "%.0f")
	opt("µs cpu / poll", s.USPerPoll, "%.2f")
	opt("µs cpu / ack", s.USPerAck, "%.2f")
	opt("% core / viewer", s.CPUPercentPerView, "%.4f")
	opt("KiB rss / viewer", s.KiBPerViewer, "%.1f")
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 1:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fµs", v*1000)
}

func kib(v int64) string {
	if v >= 10*1024 {
		return fmt.Sprintf("%.1fMiB", float64(v)/1024)
	}
	return fmt.Sprintf("%dKiB", v)
}

// progress prints a one-line status on stderr about twice a second: a bar of
// the expected run time, then what line returns (dt is the time since the
// previous call, for rates). When stderr is not a terminal it prints a full
// line every 5 s instead, so logs stay readable.
type progress struct {
	stop chan struct{}
	done chan struct{}
}

func startProgress(w io.Writer, enabled bool, name string, total time.Duration, line func(dt time.Duration) string) *progress {
	p := &progress{stop: make(chan struct{}), done: make(chan struct{})}
	if !enabled {
		close(p.done)
		return p
	}
	tty := isTerminal(w)
	go func() {
		defer close(p.done)
		start := time.Now()
		last := start
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		n := 0
		var lastLine string
		render := func(final bool) {
			now := time.Now()
			el := now.Sub(start)
			if !final || lastLine == "" {
				// The final line repeats the last rates: a sliver of time
				// since the last tick would make them meaningless.
				lastLine = line(now.Sub(last))
				last = now
			}
			frac := 1.0
			if total > 0 && el < total {
				frac = float64(el) / float64(total)
			}
			const width = 20
			fill := int(frac * width)
			bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
			s := fmt.Sprintf("[%s] %s %5.1fs  %s", bar, name, el.Seconds(), lastLine)
			switch {
			case tty:
				fmt.Fprintf(w, "\r\033[K%s", s)
				if final {
					fmt.Fprintln(w)
				}
			case final || n%10 == 0:
				fmt.Fprintln(w, s)
			}
		}
		for {
			select {
			case <-p.stop:
				render(true)
				return
			case <-tick.C:
				n++
				render(false)
			}
		}
	}()
	return p
}

// Stop prints the last line and waits for the printer to end.
func (p *progress) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// rate formats n events over dt as "1,234/s".
func rate(n uint64, dt time.Duration) string {
	if dt <= 0 {
		return "0/s"
	}
	return fmt.Sprintf("%.0f/s", float64(n)/dt.Seconds())
}

func (t table) quiz(q *QuizReport) {
	t.sec("quiz (" + q.Format + ")")
	t.row("players", "%d connected of %d, %d questions, activity %s", q.Connected, q.Players, q.Questions, q.Activity)
	t.row("answers", "%d acknowledged, %d refused", q.Answers, q.Refused)
	t.row("answers/s", "%.0f  (best question: first answer sent → last ack %.1f ms)", q.AnswersPerS, q.AnswerWindowMS)
	if q.USCPUPerAnswer > 0 {
		t.row("server cpu/answer", "%.1f µs  (%.3fs over that question, push → last ack)", q.USCPUPerAnswer, q.ServerCPUS)
	}
	t.lat("reveal → players", q.Reveal)
	t.errs("errors", q.Errors)
}

func (t table) rain(q *RainReport) {
	t.sec("rain (" + q.Format + ")")
	t.row("players", "%d connected of %d, %d taps/s each, activity %s", q.Connected, q.Players, q.TapsPerPlayer, q.Activity)
	t.row("taps", "%d sent, %d answered over %.1fs", q.Taps, q.Answered, q.WindowS)
	t.row("taps/s", "%.0f offered, %.0f served", q.TapsPerS, q.ServedPerS)
	if q.USCPUPerTap > 0 {
		t.row("server cpu/tap", "%.2f µs  (%.0f taps per CPU-second; %.3fs CPU)", q.USCPUPerTap, q.TapsPerCPUSecond, q.ServerCPUS)
	}
	t.row("won", "%d packets, %d cents (status paid_cents %d)", q.PacketsWon, q.CentsPaid, q.StatusPaid)
	t.errs("answers", q.Reasons)
}
