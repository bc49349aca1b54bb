package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// wsScenario is `bench ws`: N WebSocket readers of a room, ramped, with
// optional senders over HTTP or over the first connections.
type wsScenario struct {
	common
	conns, rampRate int
	sendRate        float64
	senders         int
	via             string
	textSize        int
	inflight        int
	maxFrame        int
	allowGaps       bool
	idle            bool
	readerAuth      bool
	reconnect       bool
	settleFor       time.Duration
	drainFor        time.Duration
	ping            time.Duration
	format          string

	sp         *sendSpec
	run        *wsRun
	clients    []*wsClient
	httpTokens []string
	conn       connStats
	dialSem    chan struct{}
	dials      sync.WaitGroup
	writers    sync.WaitGroup
	rampDur    time.Duration

	idleRSS, idleConns int64 // --idle: server RSS once the connections settled
	readersAtStart     int64
	start, end         wsCounts // at the window's start and after the drain
	acked, top         uint64   // acknowledged sends and the highest acked seq
	seq                SeqReport
	prevMsgs           uint64 // for the progress line
}

// connStats counts what happened to the connections. The readers update it.
type connStats struct {
	stopping   atomic.Bool // the run is closing them: losses are not drops
	connected  atomic.Int64
	failed     atomic.Int64
	dropped    atomic.Uint64
	reconnects atomic.Uint64
	hist       Hist // dial to handshake done
	mu         sync.Mutex
	errs       errCounter // guarded by mu
	readers    sync.WaitGroup
}

// wsCounts are the readers' counters summed.
type wsCounts struct{ msgs, bench, frames, bytes uint64 }

func (s *wsScenario) base() *common { return &s.common }

func (s *wsScenario) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.conns, "conns", 100, "WebSocket connections (readers)")
	fs.IntVar(&s.rampRate, "ramp", 1000, "connections opened per second (0 = all at once)")
	fs.Float64Var(&s.sendRate, "send-rate", 0, "messages/s sent to the room during the window (0 = none)")
	fs.IntVar(&s.senders, "senders", 1, "sending users (the rate is split between them)")
	fs.StringVar(&s.via, "send-via", "http", "send over http (POST) or ws (the first --senders connections)")
	fs.IntVar(&s.textSize, "text-size", 0, "pad message texts to this many bytes")
	fs.IntVar(&s.inflight, "inflight", 4, "ws sends awaiting an ack per sender")
	fs.IntVar(&s.maxFrame, "max-frame", 16<<20, "largest server frame accepted (bytes)")
	fs.BoolVar(&s.allowGaps, "allow-gaps", false, "a render budget is on: only duplicates and reorderings count")
	fs.BoolVar(&s.idle, "idle", false, "measure idle connections: server RSS before/after connecting, per connection")
	fs.BoolVar(&s.readerAuth, "reader-auth", false, "readers connect with a token too (one user each)")
	fs.BoolVar(&s.reconnect, "reconnect", true, "a dropped reader reconnects with its cursor (and keeps checking)")
	fs.DurationVar(&s.settleFor, "settle", 2*time.Second, "wait after the ramp before the window (and, with --idle, before reading RSS)")
	fs.DurationVar(&s.drainFor, "drain", 3*time.Second, "after the last send, wait for every reader to get the last acked seq, at most this long")
	fs.DurationVar(&s.ping, "ping", 15*time.Second, "send {\"type\":\"ping\"} (protobuf: a heartbeat) on every connection this often (0 = never)")
	fs.StringVar(&s.format, "format", "json", "the readers' encoding: json or proto (the roomcast.v1.proto subprotocol; needs --send-via http)")
}

func (s *wsScenario) check() (int, error) {
	switch {
	case s.conns < 1:
		return 0, errors.New("bench ws: --conns must be at least 1")
	case s.via != "http" && s.via != "ws":
		return 0, errors.New("bench ws: --send-via must be http or ws")
	case s.sendRate < 0 || s.senders < 1:
		return 0, errors.New("bench ws: --send-rate must be ≥ 0 and --senders ≥ 1")
	case s.idle && s.sendRate > 0:
		return 0, errors.New("bench ws: --idle measures idle connections; drop --send-rate")
	case s.via == "ws" && s.senders > s.conns:
		return 0, errors.New("bench ws: --senders exceeds --conns with --send-via ws")
	case s.inflight < 1:
		return 0, errors.New("bench ws: --inflight must be at least 1")
	case s.format != "json" && s.format != "proto":
		return 0, errors.New("bench ws: --format must be json or proto")
	case s.format == "proto" && s.via != "http":
		return 0, errors.New("bench ws: --format proto sends over http (--send-via http)")
	}
	if s.sendRate == 0 {
		s.senders = 0
	}
	if s.via == "http" {
		return s.conns + s.senders, nil
	}
	return s.conns, nil
}

func (s *wsScenario) setup(r *runner) error {
	if err := r.initTokens(); err != nil {
		return err
	}
	s.sp = &sendSpec{rate: s.sendRate, writers: s.senders, via: s.via, kind: "chat", textSize: s.textSize, honour: true, inflight: s.inflight}
	s.run = &wsRun{t: r.t, room: s.room, timeout: s.timeout, maxFrame: s.maxFrame, send: &sendStats{}, proto: s.format == "proto",
		readerChecks: readerChecks{allowGaps: s.allowGaps, since: r.rep.StartedAt.UnixNano()}}
	s.clients = make([]*wsClient, s.conns)
	for i := range s.clients {
		c := &wsClient{run: s.run, id: i}
		sender := s.via == "ws" && i < s.senders
		if s.readerAuth || sender {
			var err error
			if c.token, err = r.token("bench-u" + strconv.Itoa(i)); err != nil {
				return err
			}
		}
		if sender {
			c.sem = make(chan struct{}, s.inflight)
		}
		s.clients[i] = c
	}
	if s.via == "http" {
		var err error
		s.httpTokens, err = r.tokens("bench-s", s.senders)
		return err
	}
	return nil
}

func (s *wsScenario) estimate() time.Duration {
	return rampTime(s.conns, s.rampRate) + s.settleFor + s.duration + s.drainFor
}

func (s *wsScenario) status(r *runner, dt time.Duration) string {
	m := s.counts().msgs
	c, sent := &s.conn, s.run.send
	line := fmt.Sprintf("%-5s conns %d/%d  msgs %s  sent %d  p99 %s  errs %d",
		r.phase.Load(), c.connected.Load(), s.conns, rate(m-s.prevMsgs, dt), sent.sent.Load(),
		ms(float64(s.run.lat.Quantile(0.99))/1e6), c.failed.Load()+int64(c.dropped.Load())+int64(sent.errs.Load()))
	s.prevMsgs = m
	return line
}

func (s *wsScenario) counts() (n wsCounts) {
	for _, c := range s.clients {
		n.msgs += c.msgs.Load()
		n.bench += c.bench.Load()
		n.frames += c.frames.Load()
		n.bytes += c.bytes.Load()
	}
	return n
}

// ramp opens the connections at --ramp per second, at most 512 dialling,
// starts the pings, settles and, with --idle, reads the server's RSS.
func (s *wsScenario) ramp(r *runner) {
	s.dialSem = make(chan struct{}, 512)
	_, s.rampDur = r.rampUp(s.conns, s.rampRate, func(i int) {
		select {
		case s.dialSem <- struct{}{}:
		case <-r.runCtx.Done():
			return
		}
		s.dials.Add(1)
		s.conn.readers.Add(1)
		go s.reader(r.runCtx, s.clients[i])
	}, s.dials.Wait)
	if s.ping > 0 {
		go s.pinger(r.runCtx)
	}
	r.settle(s.settleFor)
	if s.idle && r.watch != nil && r.ctx.Err() == nil {
		s.idleConns, s.idleRSS = s.conn.connected.Load(), r.watch.sample()
	}
}

// reader connects c and reads until the run stops, reconnecting with its
// cursor (--reconnect) when the connection drops.
func (s *wsScenario) reader(ctx context.Context, c *wsClient) {
	cs := &s.conn
	defer cs.readers.Done()
	t0 := time.Now()
	err := c.dial(ctx, 0)
	<-s.dialSem
	s.dials.Done()
	if err != nil {
		cs.failed.Add(1)
		cs.mu.Lock()
		cs.errs.add(dialLabel(err), 1)
		cs.mu.Unlock()
		return
	}
	cs.hist.Record(time.Since(t0))
	cs.connected.Add(1)
	for {
		err := c.readLoop()
		if cs.stopping.Load() {
			return
		}
		cs.dropped.Add(1)
		s.run.lost(err)
		c.close()
		if !s.reconnect || !s.redial(ctx, c) {
			return
		}
	}
}

// redial reconnects c after a drop, resuming after the last seq it saw, with
// backoff; false when the run stopped first.
func (s *wsScenario) redial(ctx context.Context, c *wsClient) bool {
	for len(c.sem) > 0 {
		<-c.sem
	}
	for try := 0; ; try++ {
		if !sleepCtx(ctx, time.Duration(100<<min(try, 4))*time.Millisecond) || s.conn.stopping.Load() {
			return false
		}
		var cursor uint64
		if c.seq.started {
			cursor = c.seq.last
		}
		if c.dial(ctx, cursor) == nil {
			s.conn.reconnects.Add(1)
			return true
		}
	}
}

// pinger sends {"type":"ping"} (protobuf: a heartbeat) on every connection
// each --ping.
func (s *wsScenario) pinger(ctx context.Context) {
	tick := time.NewTicker(s.ping)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, c := range s.clients {
				if ctx.Err() != nil {
					return
				}
				if s.run.proto {
					c.write(ws.OpBinary, protoHeartbeat)
				} else {
					c.write(ws.OpText, []byte(`{"type":"ping"}`))
				}
			}
		}
	}
}

func (s *wsScenario) measure(r *runner) {
	r.runWindow(func(win context.Context) {
		s.readersAtStart = s.conn.connected.Load()
		s.start = s.counts()
		s.run.send.startWriters(r.runCtx, win, &s.writers, r.t, &s.common, s.sp, s.senders, s.httpTokens, s.clients, r.winStart)
	})
	s.writers.Wait()
	r.closeWindow()
}

// drain waits (at most --drain) for the acks of WebSocket sends still in
// flight, then for every reader to get the last acknowledged seq.
func (s *wsScenario) drain(r *runner) {
	send := s.run.send
	end := time.Now().Add(s.drainFor)
	if s.via == "ws" && !r.rep.Interrupted {
		r.waitUntil(end, 5*time.Millisecond, func() bool { return send.acked.Load()+send.errs.Load() >= send.sent.Load() })
	}
	s.top = send.top.Load()
	if s.senders > 0 && !r.rep.Interrupted {
		r.phase.Store("drain")
		r.waitUntil(end, 10*time.Millisecond, func() bool { return s.top > 0 && s.behind(nil) == 0 })
	}
	measured := time.Since(r.winStart)
	s.end = s.counts()
	s.acked = send.acked.Load()
	s.seq = s.run.seq.report(s.allowGaps, int(s.conn.connected.Load()))
	if s.top > 0 && !s.allowGaps && !r.rep.Interrupted {
		s.seq.LastAcked = s.top
		s.seq.Behind = s.behind(&s.seq.BehindSeqs)
	}
	r.rep.Server = r.watch.finish(measured)
	r.rep.DrainS = round3((measured - r.window).Seconds())
}

// behind counts the connected readers short of the highest acked seq, and
// adds the seqs they lack to seqs (if not nil).
func (s *wsScenario) behind(seqs *uint64) int {
	n := 0
	for _, c := range s.clients {
		if last := c.last.Load(); c.up.Load() && last < s.top {
			n++
			if seqs != nil {
				*seqs += s.top - last
			}
		}
	}
	return n
}

func (s *wsScenario) stop(r *runner) {
	s.conn.stopping.Store(true)
	for _, c := range s.clients {
		c.shutdown()
	}
	r.cancel()
	s.conn.readers.Wait()
}

func (s *wsScenario) report(r *runner) {
	rep := r.rep
	for _, c := range s.clients {
		if len(c.acks) > 0 {
			s.run.send.addSeqs(c.acks)
		}
	}
	rep.Conns = s.connReport()
	if s.senders > 0 {
		rep.Send = s.run.send.report(s.sp, r.window)
	}
	d := &DeliveryReport{Messages: s.end.msgs - s.start.msgs, Frames: s.end.frames - s.start.frames,
		BenchMessages: s.end.bench - s.start.bench, Latency: s.run.lat.Summary(),
		BadFrames: s.run.badFrames.Load(), ErrorFrames: s.run.errFrames.Load(),
		Format: s.format, Bytes: s.end.bytes - s.start.bytes}
	d.BytesPerDelivery = round1(perUnit(float64(d.Bytes), float64(d.Messages)))
	d.expect(s.acked, uint64(s.readersAtStart), r.window)
	rep.Delivery = d
	rep.Seq = &s.seq
	if sv := rep.Server; sv != nil && sv.MeasurementProblem == "" {
		cpu := sv.CPUSeconds
		sv.USPerDelivery = round3(perUnit(cpu*1e6, float64(d.Messages)))
		sv.DeliveriesPerCPUS = round1(perUnit(float64(d.Messages), cpu))
		sv.KiBPerConn = round3(perUnit(float64(sv.RSSEndKiB-sv.RSSBaseKiB), float64(rep.Conns.Connected)))
		if s.idleConns > 0 {
			sv.IdleRSSSettledKiB, sv.IdleConnsMeasured = s.idleRSS, int(s.idleConns)
			sv.IdleKiBPerConn = round3(float64(s.idleRSS-sv.RSSBaseKiB) / float64(s.idleConns))
		}
	}
	r.violation(uint64(rep.Conns.Failed), "failed connection")
	r.violation(rep.Conns.Dropped, "dropped connection")
	r.readerViolations(s.allowGaps)
}

func (s *wsScenario) connReport() *ConnReport {
	cs := &s.conn
	cs.mu.Lock()
	cr := &ConnReport{Target: s.conns, Connected: int(cs.connected.Load()), Failed: int(cs.failed.Load()),
		Connect: cs.hist.Summary(), Errors: cs.errs.m, Dropped: cs.dropped.Load(), Reconnects: cs.reconnects.Load()}
	cs.mu.Unlock()
	cr.ConnectsPerS = round1(perUnit(float64(cr.Connected), s.rampDur.Seconds()))
	s.run.mu.Lock()
	cr.CloseReasons = s.run.closes.m
	s.run.mu.Unlock()
	return cr
}

// expect sets the messages per second over window, the bench messages
// expected (every acked message to every reader present from the start) and
// how many of them were lost.
func (d *DeliveryReport) expect(acked, readers uint64, window time.Duration) {
	d.PerS = round1(perUnit(float64(d.Messages), window.Seconds()))
	d.Expected = acked * readers
	if d.Expected > d.BenchMessages {
		d.Lost = d.Expected - d.BenchMessages
	}
}

// readerViolations adds the violations of a scenario whose readers follow a
// room (ws, poll): sequence checks, lost bench messages, duplicate acks.
func (r *runner) readerViolations(allowGaps bool) {
	rep := r.rep
	rep.Violations = append(rep.Violations, rep.Seq.violations()...)
	if !allowGaps && !rep.Interrupted {
		r.violation(rep.Delivery.Lost, "undelivered bench message")
	}
	if rep.Send != nil {
		r.violation(rep.Send.DupSeqs, "duplicate acked seq")
	}
}
