// Package bench is roomcast's load generator, run as `roomcast bench`:
//
//	bench ws    N WebSocket viewers of a room (ramped), optional senders;
//	            send→receive latency, per-reader sequence checks, connect
//	            time, idle-connection memory (--idle)
//	bench poll  N pollers following their own cursors; requests/s, latency,
//	            errors by status, sequence checks
//	bench send  K writers posting at a total rate or flat out; acks/s,
//	            send→ack latency, errors by status and code, unique seqs
//	bench flv   N HTTP-FLV viewers of a stream; bitrate per viewer, time to
//	            first keyframe, stream-start checks, stalls
//
// Every scenario prints a progress line on stderr while it runs, then a table
// on stdout, or JSON with --json (see Report). Given --pid it samples the
// server's CPU time (/proc/PID/stat utime+stime) over the measured window and
// its RSS (/proc/PID/status VmRSS), and derives per-message and
// per-connection figures.
//
// The client side is built to stay cheap so that it can share a small
// machine with the server it measures: one goroutine per connection with
// reused buffers, frames scanned for the few fields checked (scanFrame)
// instead of decoded, a minimal HTTP/1.1 client (rawHTTP) for polls and
// sends, the codec package's FLV reader (flvtag) keeping only tag headers and
// the first bytes of each body, and latency histograms of fixed size (Hist).
//
// Messages the bench sends carry "bench:<send time in Unix ns>" as their
// text; receivers compute latency from it. Sequence checks assume the
// contract of the message service: each room's seqs increase by exactly one,
// and with an unlimited render budget (--render-budget 0) every reader gets
// every seq once, in order. With a budget, pass --allow-gaps: then only
// duplicates and reorderings count.
//
// Safety: the bench only loads loopback targets (127.0.0.0/8, ::1,
// localhost), every run is bounded by its ramp, --duration and drain, and it
// raises its open-file limit to the hard limit at start and refuses more
// connections than that allows.
//
// # Scenarios
//
// Every subcommand is a scenario (scenario.go): a type whose methods are the
// phases of a run — flags, check, setup, ramp, measure, drain, stop, report —
// which runScenario calls in that order, with a runner holding what the
// phases share (contexts, target, server watch, tokens, the Report) and the
// pieces most scenarios use: rampUp, settle, runWindow and closeWindow,
// waitUntil, violation. The clients are shared too: wsClient (a WebSocket
// reader and writer with sequence checks, wsconn.go), rawHTTP (httpc.go),
// sendStats and its writers (sender.go), readFLV (flvstats.go).
//
// Adding a scenario, say `bench quiz`:
//
//  1. In quiz.go, a quizScenario struct embedding common (the flags every
//     scenario has) with its own flags and its clients' state; embed noRamp
//     or noDrain for phases it does not have.
//  2. Its methods: flags registers the flags; check validates them and
//     returns how many connections the run opens; setup makes tokens and
//     clients (not measured); ramp starts them with r.rampUp; measure runs
//     r.runWindow (start writers on its context) then r.closeWindow; stop
//     closes the clients and waits for their goroutines; report sets its
//     section of r.rep (add a field to Report, and a table section in
//     report.go) and its violations. Keep each method short: the phases are
//     the structure.
//  3. One line in the scenarios table (scenario.go): name, usage text,
//     default --duration.
//  4. A test beside it running the scenario against the fake server
//     (fake_test.go, runBench), and the scenario in scripts/bench.sh if its
//     figures belong in docs/BENCHMARKS.md.
//
// A new option of an existing scenario (`bench ws --format proto`) is a
// flag in its flags method and a field its clients read.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Run runs `roomcast bench` with args (the subcommand and its flags).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return fmt.Errorf("bench: missing scenario (%s)", scenarioNames())
	}
	for _, sc := range scenarios {
		if sc.name == args[0] {
			return runScenario(ctx, sc, args[1:], stdout, stderr)
		}
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("bench: unknown scenario %q (%s)", args[0], scenarioNames())
}

// scenarioNames lists the scenarios: "ws, poll, send or flv".
func scenarioNames() string {
	var s string
	for i, sc := range scenarios {
		switch {
		case i == 0:
		case i == len(scenarios)-1:
			s += " or "
		default:
			s += ", "
		}
		s += sc.name
	}
	return s
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: roomcast bench SCENARIO [flags]\n\nscenarios:\n")
	for _, sc := range scenarios {
		fmt.Fprintf(w, "  %-5s %s\n", sc.name, sc.about)
	}
	fmt.Fprint(w, `
Run "roomcast bench SCENARIO -h" for a scenario's flags.
Targets must be loopback addresses. --json prints machine-readable output.
`)
}

// ErrChecksFailed is returned (wrapped) after the report is printed when a
// correctness check failed: sequence gaps, duplicates, reorderings, failed
// connections, bad stream starts.
var ErrChecksFailed = errors.New("bench: checks failed")

// common holds the flags every scenario has.
type common struct {
	url      string
	room     string
	duration time.Duration
	pid      int
	json     bool
	progress bool
	token    string
	secret   string
	level    int
	timeout  time.Duration
	cpuprof  string
}

func (c *common) register(fs *flag.FlagSet, defDuration time.Duration) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL (loopback only)")
	fs.StringVar(&c.room, "room", "bench", "room id")
	fs.DurationVar(&c.duration, "duration", defDuration, "measured window (ramp and drain come on top)")
	fs.IntVar(&c.pid, "pid", 0, "server process id: measure its CPU and RSS")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON instead of a table")
	fs.BoolVar(&c.progress, "progress", true, "show a progress line on stderr")
	fs.StringVar(&c.token, "token", "", "token for every sender (default: mint with --secret, else guest tokens)")
	fs.StringVar(&c.secret, "secret", "", "server token secret: mint one token per sender")
	fs.IntVar(&c.level, "level", 10, "user level of minted tokens (0–100)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "per-request / connect timeout")
	fs.StringVar(&c.cpuprof, "cpuprofile", "", "write the bench client's CPU profile to this file")
}

// profile starts the client CPU profile if asked; call the result when done.
// setup does what every scenario needs before it runs: resolve the target,
// make room for files open connections, start watching the server process
// and the optional CPU profile (stop ends it).
func (c *common) setup(ctx context.Context, files int) (t target, watch *serverWatch, stop func(), err error) {
	if t, err = c.target(ctx); err != nil {
		return target{}, nil, nil, err
	}
	if err = ensureFiles(files); err != nil {
		return target{}, nil, nil, err
	}
	if watch, err = newServerWatch(c.pid); err != nil {
		return target{}, nil, nil, err
	}
	if stop, err = c.profile(); err != nil {
		return target{}, nil, nil, err
	}
	return t, watch, stop, nil
}

func (c *common) profile() (stop func(), err error) {
	if c.cpuprof == "" {
		return func() {}, nil
	}
	f, err := os.Create(c.cpuprof)
	if err != nil {
		return nil, fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// target is a parsed, checked --url.
type target struct {
	base *url.URL
	addr string // host:port
}

func (c *common) target(ctx context.Context) (target, error) {
	u, err := url.Parse(c.url)
	if err != nil {
		return target{}, fmt.Errorf("bench: --url: %w", err)
	}
	if u.Scheme != "http" {
		return target{}, fmt.Errorf("bench: --url %q: only http:// is supported", c.url)
	}
	if err := checkLoopback(ctx, u.Hostname()); err != nil {
		return target{}, err
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return target{base: u, addr: net.JoinHostPort(u.Hostname(), port)}, nil
}

// checkLoopback refuses targets that are not this machine's loopback: the
// bench generates real load and must not be pointed at other hosts.
func checkLoopback(ctx context.Context, host string) error {
	if host == "" {
		return errors.New("bench: the target URL has no host")
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return fmt.Errorf("bench: refusing non-loopback target %s (the bench only loads 127.0.0.1-like addresses)", host)
		}
		return nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return fmt.Errorf("bench: resolving %s: %w", host, err)
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return fmt.Errorf("bench: refusing %s: it resolves to non-loopback %s", host, a.IP)
		}
	}
	if len(addrs) == 0 {
		return fmt.Errorf("bench: %s resolves to nothing", host)
	}
	return nil
}

// ensureFiles raises RLIMIT_NOFILE's soft limit to the hard limit and checks
// that conns connections (plus a margin) fit under it.
func ensureFiles(conns int) error {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return fmt.Errorf("bench: reading the open-file limit: %w", err)
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
		}
	}
	const margin = 64
	if need := uint64(conns) + margin; need > r.Cur {
		return fmt.Errorf("bench: %d connections need about %d open files, but this process may open %d (hard limit %d); "+
			"lower the connection count or raise the limit (ulimit -n)", conns, need, r.Cur, r.Max)
	}
	return nil
}

// params records the flags of a run for the report, secrets redacted.
func params(fs *flag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		if (f.Name == "token" || f.Name == "secret") && v != "" {
			v = "(set)"
		}
		m[f.Name] = v
	})
	return m
}

// parseFlags parses args, printing usage on -h. done is true when the
// caller should return err at once (nil for -h).
func parseFlags(fs *flag.FlagSet, args []string) (done bool, err error) {
	err = fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return true, nil
	}
	if err != nil {
		return true, fmt.Errorf("bench %s: %w", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return true, fmt.Errorf("bench %s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return false, nil
}

// errCounter counts errors by a short label ("429 rate_limited", "timeout").
type errCounter struct {
	m map[string]uint64
}

func (e *errCounter) add(label string, n uint64) {
	if e.m == nil {
		e.m = map[string]uint64{}
	}
	e.m[label] += n
}

func (e *errCounter) merge(o map[string]uint64) {
	for k, v := range o {
		e.add(k, v)
	}
}

func (e *errCounter) total() (n uint64) {
	for _, v := range e.m {
		n += v
	}
	return n
}

// errLabel classifies a transport error briefly.
func errLabel(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local ports"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, errBodyTooLarge):
		return "body too large"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// plural says "1 thing" or "3 things"; a what holding %s gets the "s"
// there instead of at the end ("reader%s behind").
func plural(n uint64, what string) string {
	s := "s"
	if n == 1 {
		s = ""
	}
	if strings.Contains(what, "%s") {
		return fmt.Sprintf("%d "+what, n, s)
	}
	return fmt.Sprintf("%d %s%s", n, what, s)
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
