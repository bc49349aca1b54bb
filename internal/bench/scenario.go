package bench

import (
	"context"
	"flag"
	"io"
	"strconv"
	"sync/atomic"
	"time"
)

// A scenario is one `roomcast bench` subcommand. runScenario drives every
// scenario through the same phases, calling its methods in this order:
//
//	flags     register its own flags (the common ones are already there)
//	check     validate them; say how many connections the run may open
//	setup     tokens, clients, connections that are not measured
//	ramp      start the clients, usually with r.rampUp
//	measure   the measured window, usually r.runWindow then r.closeWindow
//	drain     after the window: wait (bounded) until the readers caught up
//	stop      close every client and wait for its goroutines
//	report    fill the scenario's sections of r.rep and its violations
//
// status gives the progress line and estimate the run's expected length. A
// scenario keeps its flags and its clients' state in its own struct, which
// embeds common; everything shared by the phases (contexts, target, server
// watch, report, tokens) is in the runner.
type scenario interface {
	base() *common
	flags(fs *flag.FlagSet)
	check() (conns int, err error)
	setup(r *runner) error
	estimate() time.Duration
	status(r *runner, dt time.Duration) string
	ramp(r *runner)
	measure(r *runner)
	drain(r *runner)
	stop(r *runner)
	report(r *runner)
}

// scenarioInfo describes a scenario for Run and the usage text.
type scenarioInfo struct {
	name     string
	about    string
	duration time.Duration // default --duration
	make     func() scenario
}

// scenarios lists every `roomcast bench` subcommand; adding a scenario is
// adding its line here (see the package doc).
var scenarios = []scenarioInfo{
	{"ws", "N WebSocket viewers of a room, optional senders (latency, seq checks, idle memory)", 10 * time.Second,
		func() scenario { return &wsScenario{} }},
	{"poll", "N pollers of a room (requests/s, latency, seq checks)", 10 * time.Second,
		func() scenario { return &pollScenario{} }},
	{"send", "K writers posting messages (acks/s, send→ack latency, errors)", 10 * time.Second,
		func() scenario { return &sendScenario{} }},
	{"flv", "N HTTP-FLV viewers of a stream (bitrate, first keyframe, stalls)", 20 * time.Second,
		func() scenario { return &flvScenario{} }},
	{"rtmp", "N RTMP players of a stream (same figures as flv)", 20 * time.Second,
		func() scenario { return &flvScenario{rtmp: true} }},
	{"quiz", "N players of a live quiz (answers/s, server CPU per answer, reveal p50/p99)", 0,
		func() scenario { return &quizScenario{} }},
	{"rain", "N players tapping a red-packet rain (taps/s offered and served, server CPU per tap, packets, cents)", 0,
		func() scenario { return &rainScenario{} }},
}

// runner is what the phases of one run share. It is made after the flags
// are parsed and the target checked.
type runner struct {
	ctx    context.Context // the caller's: its end interrupts the run
	runCtx context.Context // ends when the run stops its clients
	cancel context.CancelFunc
	o      *common
	t      target
	watch  *serverWatch
	meter  *clientMeter
	rep    *Report
	tk     *tokens
	phase  atomic.Value // "ramp", "settle", "run", "drain": for the progress line

	winStart time.Time     // start of the measured window
	window   time.Duration // its length, set by closeWindow
}

// runScenario runs sc with args (its flags) and prints its report.
func runScenario(ctx context.Context, info scenarioInfo, args []string, stdout, stderr io.Writer) error {
	sc := info.make()
	o := sc.base()
	fs := flag.NewFlagSet(info.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, info.duration)
	sc.flags(fs)
	if done, err := parseFlags(fs, args); done {
		return err
	}
	conns, err := sc.check()
	if err != nil {
		return err
	}
	t, watch, stopProf, err := o.setup(ctx, conns)
	if err != nil {
		return err
	}
	defer stopProf()
	r := &runner{ctx: ctx, o: o, t: t, watch: watch, meter: newClientMeter(),
		rep: &Report{Scenario: info.name, StartedAt: time.Now(), Target: t.base.String(), Room: o.room, Params: params(fs)}}
	r.runCtx, r.cancel = context.WithCancel(ctx)
	defer r.cancel()
	r.phase.Store("ramp")
	if err := sc.setup(r); err != nil {
		return err
	}
	bar := startProgress(stderr, o.progress, info.name, sc.estimate(), func(dt time.Duration) string {
		r.meter.sample()
		r.watch.sample()
		return sc.status(r, dt)
	})
	defer bar.Stop()
	sc.ramp(r)
	sc.measure(r)
	sc.drain(r)
	sc.stop(r)
	bar.Stop()
	sc.report(r)
	r.rep.Client = r.meter.report()
	return r.rep.finish(o.json, stdout)
}

// initTokens makes the token source (checking --level and --secret); the
// first token call does it anyway.
func (r *runner) initTokens() error {
	if r.tk != nil {
		return nil
	}
	tk, err := newTokens(r.o, r.t, r.o.duration+time.Hour)
	r.tk = tk
	return err
}

// token returns a token for the user sub. Tokens are made before the run, so
// that minting or fetching them is not measured.
func (r *runner) token(sub string) (string, error) {
	if err := r.initTokens(); err != nil {
		return "", err
	}
	return r.tk.get(r.ctx, sub)
}

// tokens returns n tokens, for the users prefix0, prefix1, …
func (r *runner) tokens(prefix string, n int) ([]string, error) {
	toks := make([]string, n)
	for i := range toks {
		var err error
		if toks[i], err = r.token(prefix + strconv.Itoa(i)); err != nil {
			return nil, err
		}
	}
	return toks, nil
}

// rampTime estimates how long starting n clients at perS a second takes.
func rampTime(n, perS int) time.Duration {
	if perS <= 0 {
		return 0
	}
	return time.Duration(float64(n) / float64(perS) * float64(time.Second))
}

// rampUp calls start for clients 0..n-1 at perS a second (all at once when
// 0) until the run stops, then wait (if not nil) for them to be up, and
// records the ramp's length. It returns how many it started and how long
// that took.
func (r *runner) rampUp(n, perS int, start func(i int), wait func()) (int, time.Duration) {
	begin := time.Now()
	started := 0
	for i := 0; i < n; i++ {
		if perS > 0 && !sleepCtx(r.runCtx, time.Until(begin.Add(rampTime(i, perS)))) {
			break
		}
		if r.runCtx.Err() != nil {
			break
		}
		start(i)
		started++
	}
	if wait != nil {
		wait()
	}
	d := time.Since(begin)
	r.rep.RampS = round3(d.Seconds())
	return started, d
}

// settle waits d after the ramp, so the server finishes setting the
// connections up before the window.
func (r *runner) settle(d time.Duration) {
	r.phase.Store("settle")
	sleepCtx(r.runCtx, d)
}

// runWindow runs the measured window: it starts the server watch, calls
// begin with a context that ends after --duration (writers run on it), and
// returns when that context ends.
func (r *runner) runWindow(begin func(win context.Context)) {
	r.phase.Store("run")
	r.watch.start()
	r.winStart = time.Now()
	win, stop := context.WithTimeout(r.runCtx, r.o.duration)
	defer stop()
	begin(win)
	<-win.Done()
}

// closeWindow records the window's length (up to now) and whether the run
// was interrupted.
func (r *runner) closeWindow() {
	r.window = time.Since(r.winStart)
	r.rep.WindowS = round3(r.window.Seconds())
	r.rep.Interrupted = r.ctx.Err() != nil
}

// waitUntil polls cond every step until it holds, deadline passes or the
// run stops.
func (r *runner) waitUntil(deadline time.Time, step time.Duration, cond func() bool) {
	for time.Now().Before(deadline) && !cond() {
		if !sleepCtx(r.runCtx, step) {
			return
		}
	}
}

// violation adds "n what" to the report's violations when n > 0.
func (r *runner) violation(n uint64, what string) {
	if n > 0 {
		r.rep.Violations = append(r.rep.Violations, plural(n, what))
	}
}

// noRamp is for scenarios that start their clients in setup.
type noRamp struct{}

func (noRamp) ramp(*runner) {}

// noDrain is for scenarios whose window needs no drain.
type noDrain struct{}

func (noDrain) drain(*runner) {}
