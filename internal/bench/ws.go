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

	"github.com/gobwas/ws"
)

type wsOpts struct {
	common
	conns, ramp int
	sendRate    float64
	senders     int
	via         string
	textSize    int
	inflight    int
	maxFrame    int
	allowGaps   bool
	idle        bool
	readerAuth  bool
	reconnect   bool
	settle      time.Duration
	drain       time.Duration
	ping        time.Duration
}

func runWS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o wsOpts
	fs := flag.NewFlagSet("ws", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, 10*time.Second)
	fs.IntVar(&o.conns, "conns", 100, "WebSocket connections (readers)")
	fs.IntVar(&o.ramp, "ramp", 1000, "connections opened per second (0 = all at once)")
	fs.Float64Var(&o.sendRate, "send-rate", 0, "messages/s sent to the room during the window (0 = none)")
	fs.IntVar(&o.senders, "senders", 1, "sending users (the rate is split between them)")
	fs.StringVar(&o.via, "send-via", "http", "send over http (POST) or ws (the first --senders connections)")
	fs.IntVar(&o.textSize, "text-size", 0, "pad message texts to this many bytes")
	fs.IntVar(&o.inflight, "inflight", 4, "ws sends awaiting an ack per sender")
	fs.IntVar(&o.maxFrame, "max-frame", 16<<20, "largest server frame accepted (bytes)")
	fs.BoolVar(&o.allowGaps, "allow-gaps", false, "a render budget is on: only duplicates and reorderings count")
	fs.BoolVar(&o.idle, "idle", false, "measure idle connections: server RSS before/after connecting, per connection")
	fs.BoolVar(&o.readerAuth, "reader-auth", false, "readers connect with a token too (one user each)")
	fs.BoolVar(&o.reconnect, "reconnect", true, "a dropped reader reconnects with its cursor (and keeps checking)")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the ramp before the window (and, with --idle, before reading RSS)")
	fs.DurationVar(&o.drain, "drain", 3*time.Second, "after the last send, wait for every reader to get the last acked seq, at most this long")
	fs.DurationVar(&o.ping, "ping", 15*time.Second, "send {\"type\":\"ping\"} on every connection this often (0 = never)")
	if done, err := parseFlags(fs, args); done {
		return err
	}
	switch {
	case o.conns < 1:
		return errors.New("bench ws: --conns must be at least 1")
	case o.via != "http" && o.via != "ws":
		return errors.New("bench ws: --send-via must be http or ws")
	case o.sendRate < 0 || o.senders < 1:
		return errors.New("bench ws: --send-rate must be ≥ 0 and --senders ≥ 1")
	case o.idle && o.sendRate > 0:
		return errors.New("bench ws: --idle measures idle connections; drop --send-rate")
	case o.via == "ws" && o.senders > o.conns:
		return errors.New("bench ws: --senders exceeds --conns with --send-via ws")
	case o.inflight < 1:
		return errors.New("bench ws: --inflight must be at least 1")
	}
	if o.sendRate == 0 {
		o.senders = 0
	}
	extra := 0
	if o.via == "http" {
		extra = o.senders
	}
	t, watch, stop, err := o.setup(ctx, o.conns+extra)
	if err != nil {
		return err
	}
	defer stop()
	return o.run(ctx, t, watch, fs, stdout, stderr)
}

func (o *wsOpts) run(ctx context.Context, t target, watch *serverWatch, fs *flag.FlagSet, stdout, stderr io.Writer) error {
	meter := newClientMeter()
	rep := &Report{Scenario: "ws", StartedAt: time.Now(), Target: t.base.String(), Room: o.room, Params: params(fs)}
	sp := &sendSpec{rate: o.sendRate, writers: o.senders, via: o.via, kind: "chat", textSize: o.textSize, honour: true, inflight: o.inflight}
	run := &wsRun{t: t, room: o.room, allowGaps: o.allowGaps, timeout: o.timeout, maxFrame: o.maxFrame,
		since: rep.StartedAt.UnixNano(), send: &sendStats{}}

	// Tokens first, so that minting or fetching them is not measured.
	ttl := o.duration + time.Hour
	tk, err := newTokens(&o.common, t, ttl)
	if err != nil {
		return err
	}
	clients := make([]*wsClient, o.conns)
	for i := range clients {
		clients[i] = &wsClient{run: run, id: i}
		if o.readerAuth || (o.via == "ws" && i < o.senders) {
			if clients[i].token, err = tk.get(ctx, "bench-u"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
		if o.via == "ws" && i < o.senders {
			clients[i].sem = make(chan struct{}, o.inflight)
		}
	}
	var httpTokens []string
	if o.via == "http" {
		for i := 0; i < o.senders; i++ {
			tok, err := tk.get(ctx, "bench-s"+strconv.Itoa(i))
			if err != nil {
				return err
			}
			httpTokens = append(httpTokens, tok)
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		stopping   atomic.Bool
		connected  atomic.Int64
		failed     atomic.Int64
		dropped    atomic.Uint64
		reconnects atomic.Uint64
		connHist   Hist
		cmu        sync.Mutex
		connErrs   errCounter
		readers    sync.WaitGroup
		dials      sync.WaitGroup
		phase      atomic.Value
	)
	phase.Store("ramp")
	sum := func() (msgs, bench uint64) {
		for _, c := range clients {
			msgs += c.msgs.Load()
			bench += c.bench.Load()
		}
		return
	}
	rampEst := time.Duration(0)
	if o.ramp > 0 {
		rampEst = time.Duration(float64(o.conns) / float64(o.ramp) * float64(time.Second))
	}
	total := rampEst + o.settle + o.duration + o.drain
	var prevMsgs uint64
	bar := startProgress(stderr, o.progress, "ws", total, func(dt time.Duration) string {
		meter.sample()
		watch.sample()
		m, _ := sum()
		s := fmt.Sprintf("%-5s conns %d/%d  msgs %s  sent %d  p99 %s  errs %d",
			phase.Load(), connected.Load(), o.conns, rate(m-prevMsgs, dt), run.send.sent.Load(),
			ms(float64(run.lat.Quantile(0.99))/1e6), failed.Load()+int64(dropped.Load())+int64(run.send.errs.Load()))
		prevMsgs = m
		return s
	})
	defer bar.Stop()

	// Ramp: open the connections at --ramp per second, at most 512 dialling.
	dialSem := make(chan struct{}, 512)
	rampStart := time.Now()
	for i, c := range clients {
		if o.ramp > 0 {
			if !sleepCtx(runCtx, time.Until(rampStart.Add(time.Duration(float64(i)/float64(o.ramp)*float64(time.Second))))) {
				break
			}
		}
		select {
		case dialSem <- struct{}{}:
		case <-runCtx.Done():
		}
		if runCtx.Err() != nil {
			break
		}
		dials.Add(1)
		readers.Add(1)
		go func() {
			defer readers.Done()
			t0 := time.Now()
			err := c.dial(runCtx, 0)
			<-dialSem
			dials.Done()
			if err != nil {
				failed.Add(1)
				cmu.Lock()
				connErrs.add(dialLabel(err), 1)
				cmu.Unlock()
				return
			}
			connHist.Record(time.Since(t0))
			connected.Add(1)
			for {
				err := c.readLoop()
				if stopping.Load() {
					return
				}
				dropped.Add(1)
				run.lost(err)
				c.close()
				if !o.reconnect {
					return
				}
				for len(c.sem) > 0 {
					<-c.sem
				}
				for try := 0; ; try++ {
					if !sleepCtx(runCtx, time.Duration(100<<min(try, 4))*time.Millisecond) || stopping.Load() {
						return
					}
					var cursor uint64
					if c.seq.started {
						cursor = c.seq.last
					}
					if c.dial(runCtx, cursor) == nil {
						reconnects.Add(1)
						break
					}
				}
			}
		}()
	}
	dials.Wait()
	rampTime := time.Since(rampStart)
	rep.RampS = round3(rampTime.Seconds())

	if o.ping > 0 {
		pctx, pstop := context.WithCancel(runCtx)
		defer pstop()
		go func() {
			tick := time.NewTicker(o.ping)
			defer tick.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-tick.C:
					for _, c := range clients {
						if pctx.Err() != nil {
							return
						}
						c.write(ws.OpText, []byte(`{"type":"ping"}`))
					}
				}
			}
		}()
	}

	// Let the server finish setting the connections up before measuring.
	phase.Store("settle")
	sleepCtx(runCtx, o.settle)
	var idleRSS, idleConns int64
	if o.idle && watch != nil && ctx.Err() == nil {
		idleConns, idleRSS = connected.Load(), watch.sample()
	}

	// The measured window.
	phase.Store("run")
	readersAtStart := connected.Load()
	watch.start()
	msgs0, bench0 := sum()
	frames0 := uint64(0)
	for _, c := range clients {
		frames0 += c.frames.Load()
	}
	winStart := time.Now()
	winCtx, winStop := context.WithTimeout(runCtx, o.duration)
	var writers sync.WaitGroup
	run.send.startWriters(runCtx, winCtx, &writers, t, &o.common, sp, o.senders, httpTokens, clients, winStart)
	<-winCtx.Done()
	winStop()
	writers.Wait()
	window := time.Since(winStart)
	rep.Interrupted = ctx.Err() != nil
	drainEnd := time.Now().Add(o.drain)
	if o.via == "ws" && !rep.Interrupted {
		// WebSocket sends still in flight: wait for their acks (bounded).
		for time.Now().Before(drainEnd) && run.send.acked.Load()+run.send.errs.Load() < run.send.sent.Load() {
			if !sleepCtx(runCtx, 5*time.Millisecond) {
				break
			}
		}
	}
	top := run.send.top.Load()
	caughtUp := func() bool {
		for _, c := range clients {
			if c.up.Load() && c.last.Load() < top {
				return false
			}
		}
		return true
	}
	if o.senders > 0 && !rep.Interrupted {
		// Drain: until every reader has the last acknowledged seq, at most
		// --drain.
		phase.Store("drain")
		for time.Now().Before(drainEnd) && !(top > 0 && caughtUp()) {
			if !sleepCtx(runCtx, 10*time.Millisecond) {
				break
			}
		}
	}
	measured := time.Since(winStart)
	msgs1, bench1 := sum()
	acked := run.send.acked.Load()
	sr := run.seq.report(o.allowGaps, int(connected.Load()))
	if top > 0 && !o.allowGaps && !rep.Interrupted {
		sr.LastAcked = top
		for _, c := range clients {
			if last := c.last.Load(); c.up.Load() && last < top {
				sr.Behind++
				sr.BehindSeqs += top - last
			}
		}
	}
	frames1 := uint64(0)
	for _, c := range clients {
		frames1 += c.frames.Load()
	}
	rep.Server = watch.finish(measured)
	rep.WindowS = round3(window.Seconds())
	rep.DrainS = round3((measured - window).Seconds())

	// Stop: close every connection and wait for the readers.
	stopping.Store(true)
	for _, c := range clients {
		c.shutdown()
	}
	cancel()
	readers.Wait()
	bar.Stop()

	// Report.
	for _, c := range clients {
		if len(c.acks) > 0 {
			run.send.addSeqs(c.acks)
		}
	}
	cmu.Lock()
	cr := &ConnReport{Target: o.conns, Connected: int(connected.Load()), Failed: int(failed.Load()),
		Connect: connHist.Summary(), Errors: connErrs.m, Dropped: dropped.Load(), Reconnects: reconnects.Load()}
	cmu.Unlock()
	cr.ConnectsPerS = round1(perUnit(float64(cr.Connected), rampTime.Seconds()))
	run.mu.Lock()
	cr.CloseReasons = run.closes.m
	run.mu.Unlock()
	rep.Conns = cr
	if o.senders > 0 {
		rep.Send = run.send.report(sp, window)
	}
	d := &DeliveryReport{Messages: msgs1 - msgs0, Frames: frames1 - frames0, BenchMessages: bench1 - bench0,
		Latency: run.lat.Summary(), BadFrames: run.badFrames.Load(), ErrorFrames: run.errFrames.Load()}
	d.PerS = round1(perUnit(float64(d.Messages), window.Seconds()))
	d.Expected = acked * uint64(readersAtStart)
	if d.Expected > d.BenchMessages {
		d.Lost = d.Expected - d.BenchMessages
	}
	rep.Delivery = d
	rep.Seq = &sr
	if s := rep.Server; s != nil && s.MeasurementProblem == "" {
		cpu := s.CPUSeconds
		s.USPerDelivery = round3(perUnit(cpu*1e6, float64(d.Messages)))
		s.DeliveriesPerCPUS = round1(perUnit(float64(d.Messages), cpu))
		s.KiBPerConn = round3(perUnit(float64(s.RSSEndKiB-s.RSSBaseKiB), float64(cr.Connected)))
		if idleConns > 0 {
			s.IdleRSSSettledKiB, s.IdleConnsMeasured = idleRSS, int(idleConns)
			s.IdleKiBPerConn = round3(float64(idleRSS-s.RSSBaseKiB) / float64(idleConns))
		}
	}
	rep.Client = meter.report()

	if cr.Failed > 0 {
		rep.Violations = append(rep.Violations, plural(uint64(cr.Failed), "failed connection"))
	}
	if cr.Dropped > 0 {
		rep.Violations = append(rep.Violations, plural(cr.Dropped, "dropped connection"))
	}
	rep.Violations = append(rep.Violations, sr.violations()...)
	if !o.allowGaps && d.Lost > 0 && !rep.Interrupted {
		rep.Violations = append(rep.Violations, plural(d.Lost, "undelivered bench message"))
	}
	if rep.Send != nil && rep.Send.DupSeqs > 0 {
		rep.Violations = append(rep.Violations, plural(rep.Send.DupSeqs, "duplicate acked seq"))
	}
	return rep.finish(o.json, stdout)
}
