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

type sendOpts struct {
	common
	sp       sendSpec
	maxFrame int
}

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o sendOpts
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, 10*time.Second)
	fs.IntVar(&o.sp.writers, "senders", 16, "concurrent writers, one user and one connection each")
	fs.Float64Var(&o.sp.rate, "rate", 0, "total messages/s over all writers (0 = as fast as possible)")
	fs.StringVar(&o.sp.via, "via", "http", "http (POST /api/rooms/{id}/messages) or ws (send frames)")
	fs.IntVar(&o.sp.inflight, "inflight", 1, "ws: sends awaiting an ack per writer")
	fs.StringVar(&o.sp.kind, "kind", "chat", "message kind: chat or gift")
	fs.StringVar(&o.sp.gift, "gift", "rose", "gift id for --kind gift")
	fs.IntVar(&o.sp.textSize, "text-size", 0, "pad message texts to this many bytes")
	fs.BoolVar(&o.sp.honour, "honour-retry", true, "after a 429, wait retry_after_ms")
	fs.IntVar(&o.maxFrame, "max-frame", 16<<20, "ws: largest server frame accepted (bytes)")
	if done, err := parseFlags(fs, args); done {
		return err
	}
	switch {
	case o.sp.writers < 1:
		return errors.New("bench send: --senders must be at least 1")
	case o.sp.via != "http" && o.sp.via != "ws":
		return errors.New("bench send: --via must be http or ws")
	case o.sp.kind != "chat" && o.sp.kind != "gift":
		return errors.New("bench send: --kind must be chat or gift")
	case o.sp.rate < 0 || o.sp.inflight < 1:
		return errors.New("bench send: --rate must be ≥ 0 and --inflight ≥ 1")
	}
	t, watch, stopProf, err := o.setup(ctx, o.sp.writers)
	if err != nil {
		return err
	}
	defer stopProf()
	meter := newClientMeter()
	rep := &Report{Scenario: "send", StartedAt: time.Now(), Target: t.base.String(), Room: o.room, Params: params(fs)}
	tk, err := newTokens(&o.common, t, o.duration+time.Hour)
	if err != nil {
		return err
	}
	toks := make([]string, o.sp.writers)
	for i := range toks {
		if toks[i], err = tk.get(ctx, "bench-s"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &sendStats{}
	sp := &o.sp

	// WebSocket writers connect first (not measured).
	var clients []*wsClient
	var readers sync.WaitGroup
	var run *wsRun
	var stopping atomic.Bool
	if sp.via == "ws" {
		run = &wsRun{t: t, room: o.room, allowGaps: true, timeout: o.timeout, maxFrame: o.maxFrame,
			since: rep.StartedAt.UnixNano(), send: st}
		for i := range toks {
			c := &wsClient{run: run, id: i, token: toks[i], sem: make(chan struct{}, sp.inflight)}
			if err := c.dial(runCtx, 0); err != nil {
				for _, c := range clients {
					c.shutdown()
				}
				return fmt.Errorf("bench send: connecting writer %d: %s", i, dialLabel(err))
			}
			clients = append(clients, c)
			readers.Add(1)
			go func() {
				defer readers.Done()
				if err := c.readLoop(); !stopping.Load() {
					st.fail("ws closed: " + errLabel(err))
				}
			}()
		}
	}

	var prevAcks uint64
	bar := startProgress(stderr, o.progress, "send", o.duration, func(dt time.Duration) string {
		meter.sample()
		watch.sample()
		a := st.acked.Load()
		s := fmt.Sprintf("writers %d  sent %d  acks %s  p99 %s  errs %d",
			sp.writers, st.sent.Load(), rate(a-prevAcks, dt), ms(float64(st.lat.Quantile(0.99))/1e6), st.errs.Load())
		prevAcks = a
		return s
	})
	defer bar.Stop()

	watch.start()
	winStart := time.Now()
	winCtx, winStop := context.WithTimeout(runCtx, o.duration)
	var writers sync.WaitGroup
	st.startWriters(runCtx, winCtx, &writers, t, &o.common, sp, sp.writers, toks, clients, winStart)
	<-winCtx.Done()
	winStop()
	writers.Wait()
	if sp.via == "ws" && ctx.Err() == nil {
		// Give the last acks a moment (bounded) to arrive.
		deadline := time.Now().Add(min(o.timeout, 2*time.Second))
		for time.Now().Before(deadline) && st.acked.Load()+st.errs.Load() < st.sent.Load() {
			time.Sleep(20 * time.Millisecond)
		}
	}
	window := time.Since(winStart)
	rep.Server = watch.finish(window)
	rep.Interrupted = ctx.Err() != nil
	stopping.Store(true)
	for _, c := range clients {
		c.shutdown()
	}
	cancel()
	readers.Wait()
	bar.Stop()
	for _, c := range clients {
		st.addSeqs(c.acks)
	}
	rep.WindowS = round3(window.Seconds())
	rep.Send = st.report(sp, window)
	if s := rep.Server; s != nil && s.MeasurementProblem == "" {
		s.USPerAck = round3(perUnit(s.CPUSeconds*1e6, float64(rep.Send.Acked)))
	}
	rep.Client = meter.report()
	if rep.Send.DupSeqs > 0 {
		rep.Violations = append(rep.Violations, plural(rep.Send.DupSeqs, "duplicate acked seq"))
	}
	if rep.Send.Acked == 0 && !rep.Interrupted {
		rep.Violations = append(rep.Violations, "no message was acknowledged")
	}
	return rep.finish(o.json, stdout)
}
