package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type pollOpts struct {
	common
	pollers    int
	ramp       int
	interval   string
	limit      int
	allowGaps  bool
	readerAuth bool
	sendRate   float64
	senders    int
	textSize   int
	drain      time.Duration
}

// PollReport covers the pollers' requests.
type PollReport struct {
	Pollers      int               `json:"pollers"`
	Interval     string            `json:"interval"` // "auto" = poll_after_ms, "0" = back to back
	Limit        int               `json:"limit"`
	Requests     uint64            `json:"requests"` // answered 200 in the window
	PerS         float64           `json:"requests_per_s"`
	Empty        uint64            `json:"empty"` // answers with no message
	Latency      Latency           `json:"latency"`
	Errors       map[string]uint64 `json:"errors"` // by status (and code) or transport error
	PollAfterMin int64             `json:"poll_after_ms_min"`
	PollAfterMax int64             `json:"poll_after_ms_max"`
}

// poller is one polling client; its goroutine owns everything but the
// atomics.
type poller struct {
	id     int
	hc     *rawHTTP
	seq    seqCheck
	fi     frameInfo
	path   []byte
	reqs   atomic.Uint64
	empty  atomic.Uint64
	msgs   atomic.Uint64
	bench  atomic.Uint64
	errs   errCounter
	nerr   atomic.Uint64
	paMin  int64
	paMax  int64
	last   atomic.Uint64
	polled bool
}

func runPoll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o pollOpts
	fs := flag.NewFlagSet("poll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, 10*time.Second)
	fs.IntVar(&o.pollers, "pollers", 100, "concurrent pollers, one keep-alive connection each")
	fs.IntVar(&o.pollers, "conns", 100, "alias of --pollers")
	fs.IntVar(&o.ramp, "ramp", 1000, "pollers started per second (0 = all at once)")
	fs.StringVar(&o.interval, "interval", "auto", `wait between polls: "auto" honours poll_after_ms, "0" polls back to back, or a duration`)
	fs.IntVar(&o.limit, "limit", 100, "limit= of each poll (0 = server default)")
	fs.BoolVar(&o.allowGaps, "allow-gaps", false, "a render budget is on: only duplicates and reorderings count")
	fs.BoolVar(&o.readerAuth, "reader-auth", false, "pollers send a token (one user each)")
	fs.Float64Var(&o.sendRate, "send-rate", 0, "messages/s sent to the room during the window (0 = none)")
	fs.IntVar(&o.senders, "senders", 1, "sending users (HTTP)")
	fs.IntVar(&o.textSize, "text-size", 0, "pad message texts to this many bytes")
	fs.DurationVar(&o.drain, "drain", 3*time.Second, "after the window: poll until caught up, at most this long")
	if done, err := parseFlags(fs, args); done {
		return err
	}
	var fixed time.Duration
	auto := o.interval == "auto"
	if !auto {
		d, err := time.ParseDuration(o.interval)
		if o.interval == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return fmt.Errorf("bench poll: --interval %q: want auto, 0 or a duration", o.interval)
		}
		fixed = d
	}
	switch {
	case o.pollers < 1:
		return errors.New("bench poll: --pollers must be at least 1")
	case o.limit < 0 || o.sendRate < 0 || o.senders < 1:
		return errors.New("bench poll: --limit and --send-rate must be ≥ 0, --senders ≥ 1")
	}
	if o.sendRate == 0 {
		o.senders = 0
	}
	t, watch, stopProf, err := o.setup(ctx, o.pollers+o.senders)
	if err != nil {
		return err
	}
	defer stopProf()
	meter := newClientMeter()
	rep := &Report{Scenario: "poll", StartedAt: time.Now(), Target: t.base.String(), Room: o.room, Params: params(fs)}
	since := rep.StartedAt.UnixNano()
	tk, err := newTokens(&o.common, t, o.duration+time.Hour)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		counts   seqCounts
		lat      shardedHist // request latency (window only)
		recv     shardedHist // send→receive
		measure  atomic.Bool
		stop     atomic.Bool
		catchUp  atomic.Bool
		started  atomic.Int64
		wg       sync.WaitGroup
		phase    atomic.Value
		wake     = make(chan struct{}) // closed when the drain starts
		basePath = t.base.Path + "/api/rooms/" + o.room + "/messages"
	)
	phase.Store("ramp")
	ps := make([]*poller, o.pollers)
	toks := make([]string, o.pollers)
	for i := range ps {
		ps[i] = &poller{id: i, hc: newRawHTTP(runCtx, t.addr, t.base.Host, o.timeout)}
		if o.readerAuth {
			if toks[i], err = tk.get(ctx, "bench-u"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
	}
	sendToks := make([]string, o.senders)
	for i := range sendToks {
		if sendToks[i], err = tk.get(ctx, "bench-s"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	sum := func() (reqs, msgs, bench, errs uint64) {
		for _, p := range ps {
			reqs += p.reqs.Load()
			msgs += p.msgs.Load()
			bench += p.bench.Load()
			errs += p.nerr.Load()
		}
		return
	}

	pollOnce := func(p *poller, tok string) (wait time.Duration) {
		// Only a poll that started after the senders stopped can tell that
		// this poller has caught up.
		draining := catchUp.Load()
		b := append(p.path[:0], basePath...)
		b = append(b, "?limit="...)
		b = strconv.AppendInt(b, int64(o.limit), 10)
		if p.polled && p.seq.started {
			b = append(b, "&cursor="...)
			b = strconv.AppendUint(b, p.seq.last, 10)
		}
		if o.limit == 0 {
			b = b[:len(basePath)]
			if p.polled && p.seq.started {
				b = append(b, "?cursor="...)
				b = strconv.AppendUint(b, p.seq.last, 10)
			}
		}
		p.path = b
		t0 := time.Now()
		status, body, err := p.hc.Do("GET", b, tok, nil)
		d := time.Since(t0)
		if stop.Load() && !catchUp.Load() {
			return 0
		}
		if err != nil {
			p.nerr.Add(1)
			p.errs.add(errLabel(err), 1)
			return 100 * time.Millisecond
		}
		fi := &p.fi
		serr := scanFrame(body, fi)
		if status != 200 {
			p.nerr.Add(1)
			p.errs.add(statusLabel(status, fi.code), 1)
			if fi.retryAfterMs > 0 {
				return time.Duration(fi.retryAfterMs) * time.Millisecond
			}
			return 100 * time.Millisecond
		}
		if serr != nil {
			p.nerr.Add(1)
			p.errs.add("200 malformed", 1)
			return 100 * time.Millisecond
		}
		if measure.Load() {
			lat.Record(p.id, d)
		}
		if fi.reset {
			counts.resets.Add(1)
			p.seq.rebase()
		}
		p.polled = true
		var now int64
		var nb uint64
		for _, m := range fi.msgs {
			p.seq.observe(m.seq, &counts, o.allowGaps)
			if m.sent >= since {
				if now == 0 {
					now = time.Now().UnixNano()
				}
				recv.Record(p.id, time.Duration(now-m.sent))
				nb++
			}
		}
		if fi.hasCursor {
			p.seq.advance(fi.cursor, &counts, o.allowGaps)
		}
		if p.seq.started {
			p.last.Store(p.seq.last)
		}
		p.reqs.Add(1)
		p.msgs.Add(uint64(len(fi.msgs)))
		p.bench.Add(nb)
		if len(fi.msgs) == 0 {
			p.empty.Add(1)
		}
		if pa := fi.pollAfterMs; pa > 0 {
			if p.paMin == 0 || pa < p.paMin {
				p.paMin = pa
			}
			p.paMax = max(p.paMax, pa)
		}
		if catchUp.Load() {
			if draining && len(fi.msgs) == 0 {
				return -1 // caught up
			}
			return 0
		}
		if auto {
			return time.Duration(fi.pollAfterMs) * time.Millisecond
		}
		return fixed
	}

	rampEst := time.Duration(0)
	if o.ramp > 0 {
		rampEst = time.Duration(float64(o.pollers) / float64(o.ramp) * float64(time.Second))
	}
	var prevReqs uint64
	bar := startProgress(stderr, o.progress, "poll", rampEst+o.duration, func(dt time.Duration) string {
		meter.sample()
		watch.sample()
		r, m, _, e := sum()
		s := fmt.Sprintf("%-5s pollers %d/%d  req %s  msgs %d  p99 %s  errs %d",
			phase.Load(), started.Load(), o.pollers, rate(r-prevReqs, dt), m, ms(float64(lat.Quantile(0.99))/1e6), e)
		prevReqs = r
		return s
	})
	defer bar.Stop()

	rampStart := time.Now()
	for i, p := range ps {
		if o.ramp > 0 && !sleepCtx(runCtx, time.Until(rampStart.Add(time.Duration(float64(i)/float64(o.ramp)*float64(time.Second))))) {
			break
		}
		if runCtx.Err() != nil {
			break
		}
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.hc.release()
			for !stop.Load() || catchUp.Load() {
				w := pollOnce(p, toks[p.id])
				if w < 0 || runCtx.Err() != nil {
					return
				}
				if w > 0 {
					t := time.NewTimer(w)
					select {
					case <-runCtx.Done():
						t.Stop()
						return
					case <-wake:
						t.Stop()
					case <-t.C:
					}
				}
			}
		}()
	}
	rep.RampS = round3(time.Since(rampStart).Seconds())

	phase.Store("run")
	watch.start()
	reqs0, msgs0, bench0, _ := sum()
	measure.Store(true)
	winStart := time.Now()
	winCtx, winStop := context.WithTimeout(runCtx, o.duration)
	send := &sendStats{}
	sp := &sendSpec{rate: o.sendRate, writers: o.senders, via: "http", kind: "chat", textSize: o.textSize, honour: true}
	var writers sync.WaitGroup
	for i := 0; i < o.senders; i++ {
		writers.Add(1)
		hc := newRawHTTP(runCtx, t.addr, t.base.Host, o.timeout)
		go func(i int) {
			defer writers.Done()
			defer hc.release()
			send.httpWriter(winCtx, hc, sp, i, []byte(basePath), sendToks[i], winStart)
		}(i)
	}
	<-winCtx.Done()
	winStop()
	measure.Store(false)
	window := time.Since(winStart)
	reqs1, _, _, _ := sum()
	rep.Server = watch.finish(window)
	writers.Wait()
	rep.Interrupted = ctx.Err() != nil

	// Drain: with senders, poll back to back until each poller is caught up,
	// so the tail check sees everything that was acknowledged.
	drainStart := time.Now()
	if o.senders > 0 && !rep.Interrupted {
		phase.Store("drain")
		catchUp.Store(true)
		stop.Store(true)
		close(wake)
		dctx, dstop := context.WithTimeout(runCtx, o.drain)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-dctx.Done():
		}
		dstop()
		catchUp.Store(false)
	}
	stop.Store(true)
	cancel()
	wg.Wait()
	bar.Stop()
	_, msgs1, bench1, _ := sum()
	rep.WindowS = round3(window.Seconds())
	rep.DrainS = round3(time.Since(drainStart).Seconds())

	pr := &PollReport{Pollers: o.pollers, Interval: o.interval, Limit: o.limit, Requests: reqs1 - reqs0,
		Latency: lat.Summary(), Errors: map[string]uint64{}}
	pr.PerS = round1(perUnit(float64(pr.Requests), window.Seconds()))
	var errs errCounter
	for _, p := range ps {
		errs.merge(p.errs.m)
		pr.Empty += p.empty.Load()
		if p.paMin > 0 && (pr.PollAfterMin == 0 || p.paMin < pr.PollAfterMin) {
			pr.PollAfterMin = p.paMin
		}
		pr.PollAfterMax = max(pr.PollAfterMax, p.paMax)
	}
	if errs.m != nil {
		pr.Errors = errs.m
	}
	rep.Poll = pr
	if o.senders > 0 {
		rep.Send = send.report(sp, window)
	}
	d := &DeliveryReport{Messages: msgs1 - msgs0, BenchMessages: bench1 - bench0, Latency: recv.Summary()}
	d.PerS = round1(perUnit(float64(d.Messages), window.Seconds()))
	d.Expected = send.acked.Load() * uint64(started.Load())
	if d.Expected > d.BenchMessages {
		d.Lost = d.Expected - d.BenchMessages
	}
	rep.Delivery = d
	sr := counts.report(o.allowGaps, int(started.Load()))
	if top := send.top.Load(); top > 0 && !o.allowGaps && !rep.Interrupted {
		sr.LastAcked = top
		for _, p := range ps[:started.Load()] {
			if last := p.last.Load(); last < top {
				sr.Behind++
				sr.BehindSeqs += top - last
			}
		}
	}
	rep.Seq = &sr
	if s := rep.Server; s != nil && s.MeasurementProblem == "" && s.CPUSeconds > 0 {
		s.PollsPerCPUS = round1(float64(pr.Requests) / s.CPUSeconds)
		s.USPerPoll = round3(perUnit(s.CPUSeconds*1e6, float64(pr.Requests)))
	}
	rep.Client = meter.report()
	rep.Violations = append(rep.Violations, sr.violations()...)
	if !o.allowGaps && d.Lost > 0 && !rep.Interrupted {
		rep.Violations = append(rep.Violations, plural(d.Lost, "undelivered bench message"))
	}
	if rep.Send != nil && rep.Send.DupSeqs > 0 {
		rep.Violations = append(rep.Violations, plural(rep.Send.DupSeqs, "duplicate acked seq"))
	}
	return rep.finish(o.json, stdout)
}
