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

	"net/http"
)

// pollScenario is `bench poll`: N pollers following their own cursors, with
// optional HTTP senders.
type pollScenario struct {
	common
	pollers    int
	rampRate   int
	interval   string
	limit      int
	readerAuth bool
	client     string // "std" (net/http keep-alive) or "raw" (the minimal client)
	tr         *http.Transport
	sendRate   float64
	senders    int
	textSize   int
	drainFor   time.Duration

	auto     bool          // --interval auto: honour poll_after_ms
	fixed    time.Duration // the fixed interval otherwise
	basePath string
	ps       []*poller
	toks     []string // the pollers' tokens (--reader-auth)
	sendToks []string
	readerChecks
	reqLat     shardedHist // request latency (window only)
	measuring  atomic.Bool // in the window: request latencies count
	stopping   atomic.Bool
	catchUp    atomic.Bool   // the drain: poll back to back until caught up
	wake       chan struct{} // closed when the drain starts
	started    atomic.Int64
	wg         sync.WaitGroup
	send       sendStats
	sp         *sendSpec
	writers    sync.WaitGroup
	drainStart time.Time

	start   pollCounts // at the window's start
	endReqs uint64     // requests at the window's end
	prev    uint64     // requests at the last progress line
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
	hc     httpDoer
	tok    string
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

// pollCounts are the pollers' counters summed.
type pollCounts struct{ reqs, msgs, bench, errs uint64 }

func (s *pollScenario) base() *common { return &s.common }

func (s *pollScenario) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.pollers, "pollers", 100, "concurrent pollers, one keep-alive connection each")
	fs.IntVar(&s.pollers, "conns", 100, "alias of --pollers")
	fs.IntVar(&s.rampRate, "ramp", 1000, "pollers started per second (0 = all at once)")
	fs.StringVar(&s.interval, "interval", "auto", `wait between polls: "auto" honours poll_after_ms, "0" polls back to back, or a duration`)
	fs.IntVar(&s.limit, "limit", 15, "limit= of each poll, the JS client's page (0 = server default)")
	fs.StringVar(&s.client, "client", "std", `"std": Go net/http keep-alive, like real clients; "raw": a minimal HTTP/1.1 client (less load-generator CPU)`)
	fs.BoolVar(&s.allowGaps, "allow-gaps", false, "a render budget is on: only duplicates and reorderings count")
	fs.BoolVar(&s.readerAuth, "reader-auth", false, "pollers send a token (one user each)")
	fs.Float64Var(&s.sendRate, "send-rate", 0, "messages/s sent to the room during the window (0 = none)")
	fs.IntVar(&s.senders, "senders", 1, "sending users (HTTP)")
	fs.IntVar(&s.textSize, "text-size", 0, "pad message texts to this many bytes")
	fs.DurationVar(&s.drainFor, "drain", 3*time.Second, "after the window: poll until caught up, at most this long")
}

func (s *pollScenario) check() (int, error) {
	s.auto = s.interval == "auto"
	if !s.auto {
		d, err := time.ParseDuration(s.interval)
		if s.interval == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return 0, fmt.Errorf("bench poll: --interval %q: want auto, 0 or a duration", s.interval)
		}
		s.fixed = d
	}
	switch {
	case s.pollers < 1:
		return 0, errors.New("bench poll: --pollers must be at least 1")
	case s.client != "std" && s.client != "raw":
		return 0, fmt.Errorf("bench poll: --client %q: want std or raw", s.client)
	case s.limit < 0 || s.sendRate < 0 || s.senders < 1:
		return 0, errors.New("bench poll: --limit and --send-rate must be ≥ 0, --senders ≥ 1")
	}
	if s.sendRate == 0 {
		s.senders = 0
	}
	return s.pollers + s.senders, nil
}

func (s *pollScenario) setup(r *runner) error {
	if err := r.initTokens(); err != nil {
		return err
	}
	s.since = r.rep.StartedAt.UnixNano()
	s.basePath = r.t.base.Path + "/api/rooms/" + s.room + "/messages"
	s.wake = make(chan struct{})
	s.sp = &sendSpec{rate: s.sendRate, writers: s.senders, via: "http", kind: "chat", textSize: s.textSize, honour: true}
	s.ps = make([]*poller, s.pollers)
	for i := range s.ps {
		p := &poller{id: i}
		if s.client == "raw" {
			p.hc = newRawHTTP(r.runCtx, r.t.addr, r.t.base.Host, s.timeout)
		} else {
			if s.tr == nil {
				s.tr = newStdTransport(s.pollers, s.timeout)
			}
			p.hc = newStdHTTP(r.runCtx, s.tr, r.t.base.Scheme+"://"+r.t.base.Host, s.timeout)
		}
		if s.readerAuth {
			var err error
			if p.tok, err = r.token("bench-u" + strconv.Itoa(i)); err != nil {
				return err
			}
		}
		s.ps[i] = p
	}
	var err error
	s.sendToks, err = r.tokens("bench-s", s.senders)
	return err
}

func (s *pollScenario) estimate() time.Duration { return rampTime(s.pollers, s.rampRate) + s.duration }

func (s *pollScenario) status(r *runner, dt time.Duration) string {
	c := s.sum()
	line := fmt.Sprintf("%-5s pollers %d/%d  req %s  msgs %d  p99 %s  errs %d",
		r.phase.Load(), s.started.Load(), s.pollers, rate(c.reqs-s.prev, dt), c.msgs, ms(float64(s.reqLat.Quantile(0.99))/1e6), c.errs)
	s.prev = c.reqs
	return line
}

func (s *pollScenario) sum() (c pollCounts) {
	for _, p := range s.ps {
		c.reqs += p.reqs.Load()
		c.msgs += p.msgs.Load()
		c.bench += p.bench.Load()
		c.errs += p.nerr.Load()
	}
	return c
}

func (s *pollScenario) ramp(r *runner) {
	r.rampUp(s.pollers, s.rampRate, func(i int) {
		s.started.Add(1)
		s.wg.Add(1)
		go s.loop(r.runCtx, s.ps[i])
	}, nil)
}

// loop polls until the run stops or, in the drain, p has caught up.
func (s *pollScenario) loop(ctx context.Context, p *poller) {
	defer s.wg.Done()
	defer p.hc.release()
	for !s.stopping.Load() || s.catchUp.Load() {
		w := s.poll(p)
		if w < 0 || ctx.Err() != nil {
			return
		}
		if w > 0 {
			t := time.NewTimer(w)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-s.wake:
				t.Stop()
			case <-t.C:
			}
		}
	}
}

// poll makes one request and returns how long to wait before the next (-1:
// caught up in the drain).
func (s *pollScenario) poll(p *poller) time.Duration {
	// Only a poll that started after the senders stopped can tell that
	// this poller has caught up.
	draining := s.catchUp.Load()
	t0 := time.Now()
	status, body, err := p.hc.Do("GET", s.pollPath(p), p.tok, nil)
	d := time.Since(t0)
	if s.stopping.Load() && !s.catchUp.Load() {
		return 0
	}
	fi := &p.fi
	if wait, ok := p.answer(status, body, err); !ok {
		return wait
	}
	if s.measuring.Load() {
		s.reqLat.Record(p.id, d)
	}
	s.observe(p)
	if s.catchUp.Load() {
		if draining && len(fi.msgs) == 0 {
			return -1 // caught up
		}
		return 0
	}
	if s.auto {
		return time.Duration(fi.pollAfterMs) * time.Millisecond
	}
	return s.fixed
}

// pollPath builds p's next request path: limit, and its cursor once it has
// one.
func (s *pollScenario) pollPath(p *poller) []byte {
	b := append(p.path[:0], s.basePath...)
	b = append(b, "?limit="...)
	b = strconv.AppendInt(b, int64(s.limit), 10)
	if p.polled && p.seq.started {
		b = append(b, "&cursor="...)
		b = strconv.AppendUint(b, p.cursor(), 10)
	}
	if s.limit == 0 {
		b = b[:len(s.basePath)]
		if p.polled && p.seq.started {
			b = append(b, "?cursor="...)
			b = strconv.AppendUint(b, p.cursor(), 10)
		}
	}
	p.path = b
	return b
}

// cursor is what p sends back: the answer's cursor, as the JS client does
// (with a render budget it moves past messages the server chose not to
// send), else the last seq seen.
func (p *poller) cursor() uint64 {
	if p.fi.hasCursor {
		return p.fi.cursor
	}
	return p.seq.last
}

// answer scans a poll's answer into p.fi; on an error it counts it and says
// how long to wait before polling again.
func (p *poller) answer(status int, body []byte, err error) (time.Duration, bool) {
	if err != nil {
		p.nerr.Add(1)
		p.errs.add(errLabel(err), 1)
		return 100 * time.Millisecond, false
	}
	fi := &p.fi
	serr := scanFrame(body, fi)
	if status != 200 {
		p.nerr.Add(1)
		p.errs.add(statusLabel(status, fi.code), 1)
		if fi.retryAfterMs > 0 {
			return time.Duration(fi.retryAfterMs) * time.Millisecond, false
		}
		return 100 * time.Millisecond, false
	}
	if serr != nil {
		p.nerr.Add(1)
		p.errs.add("200 malformed", 1)
		return 100 * time.Millisecond, false
	}
	return 0, true
}

// observe checks and counts the messages of p's last answer.
func (s *pollScenario) observe(p *poller) {
	fi := &p.fi
	if fi.reset {
		s.seq.resets.Add(1)
		p.seq.rebase()
	}
	p.polled = true
	nb := s.batch(fi, &p.seq, p.id)
	p.seq.publish(&p.last)
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
}

func (s *pollScenario) measure(r *runner) {
	r.runWindow(func(win context.Context) {
		s.start = s.sum()
		s.measuring.Store(true)
		s.send.startWriters(r.runCtx, win, &s.writers, r.t, &s.common, s.sp, s.senders, s.sendToks, nil, r.winStart)
	})
	s.measuring.Store(false)
	r.closeWindow()
	s.endReqs = s.sum().reqs
	r.rep.Server = r.watch.finish(r.window)
	s.writers.Wait()
}

// drain, with senders, polls back to back until each poller is caught up
// (at most --drain), so the tail check sees everything that was
// acknowledged.
func (s *pollScenario) drain(r *runner) {
	s.drainStart = time.Now()
	if s.senders == 0 || r.rep.Interrupted {
		return
	}
	r.phase.Store("drain")
	s.catchUp.Store(true)
	s.stopping.Store(true)
	close(s.wake)
	ctx, stop := context.WithTimeout(r.runCtx, s.drainFor)
	defer stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.catchUp.Store(false)
}

func (s *pollScenario) stop(r *runner) {
	s.stopping.Store(true)
	r.cancel()
	s.wg.Wait()
	if s.tr != nil {
		s.tr.CloseIdleConnections()
	}
	r.rep.DrainS = round3(time.Since(s.drainStart).Seconds())
}

func (s *pollScenario) report(r *runner) {
	rep := r.rep
	end := s.sum()
	rep.Poll = s.pollReport(r.window)
	if s.senders > 0 {
		rep.Send = s.send.report(s.sp, r.window)
	}
	started := s.started.Load()
	d := &DeliveryReport{Messages: end.msgs - s.start.msgs, BenchMessages: end.bench - s.start.bench, Latency: s.lat.Summary()}
	d.expect(s.send.acked.Load(), uint64(started), r.window)
	rep.Delivery = d
	sr := s.seq.report(s.allowGaps, int(started))
	if top := s.send.top.Load(); top > 0 && !s.allowGaps && !rep.Interrupted {
		sr.LastAcked = top
		for _, p := range s.ps[:started] {
			if last := p.last.Load(); last < top {
				sr.Behind++
				sr.BehindSeqs += top - last
			}
		}
	}
	rep.Seq = &sr
	if sv := rep.Server; sv != nil && sv.MeasurementProblem == "" && sv.CPUSeconds > 0 {
		sv.PollsPerCPUS = round1(float64(rep.Poll.Requests) / sv.CPUSeconds)
		sv.USPerPoll = round3(perUnit(sv.CPUSeconds*1e6, float64(rep.Poll.Requests)))
	}
	r.readerViolations(s.allowGaps)
}

func (s *pollScenario) pollReport(window time.Duration) *PollReport {
	pr := &PollReport{Pollers: s.pollers, Interval: s.interval, Limit: s.limit, Requests: s.endReqs - s.start.reqs,
		Latency: s.reqLat.Summary(), Errors: map[string]uint64{}}
	pr.PerS = round1(perUnit(float64(pr.Requests), window.Seconds()))
	var errs errCounter
	for _, p := range s.ps {
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
	return pr
}
