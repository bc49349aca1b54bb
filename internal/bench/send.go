package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// sendScenario is `bench send`: K writers posting messages over HTTP or
// WebSocket, at a total rate or flat out.
type sendScenario struct {
	common
	noRamp
	noDrain
	sp         sendSpec
	maxFrame   int
	users      int
	userPrefix string

	toks     []string
	st       sendStats
	clients  []*wsClient // --via ws: the writers' connections
	readers  sync.WaitGroup
	stopping atomic.Bool
	writers  sync.WaitGroup
	prevAcks uint64 // for the progress line
}

func (s *sendScenario) base() *common { return &s.common }

func (s *sendScenario) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.sp.writers, "senders", 16, "concurrent writers, one connection each")
	fs.IntVar(&s.users, "users", 0, "http: distinct users the senders cycle through (each sender its share, one after another), so each stays within a per-user rate limit (0 = one user per sender)")
	fs.StringVar(&s.userPrefix, "user-prefix", "bench-s", "users are named this prefix + 0, 1, … (give each of several bench processes its own)")
	fs.Float64Var(&s.sp.rate, "rate", 0, "total messages/s over all writers (0 = as fast as possible)")
	fs.StringVar(&s.sp.via, "via", "http", "http (POST /api/rooms/{id}/messages) or ws (send frames)")
	fs.IntVar(&s.sp.inflight, "inflight", 1, "ws: sends awaiting an ack per writer")
	fs.StringVar(&s.sp.kind, "kind", "chat", "message kind: chat or gift")
	fs.StringVar(&s.sp.gift, "gift", "rose", "gift id for --kind gift")
	fs.IntVar(&s.sp.textSize, "text-size", 0, "pad message texts to this many bytes")
	fs.BoolVar(&s.sp.msgID, "client-msg-id", false, "give each message a client_msg_id (idempotent send), as the JS client does")
	fs.BoolVar(&s.sp.honour, "honour-retry", true, "after a 429, wait retry_after_ms")
	fs.IntVar(&s.maxFrame, "max-frame", 16<<20, "ws: largest server frame accepted (bytes)")
}

func (s *sendScenario) check() (int, error) {
	switch {
	case s.sp.writers < 1:
		return 0, errors.New("bench send: --senders must be at least 1")
	case s.sp.via != "http" && s.sp.via != "ws":
		return 0, errors.New("bench send: --via must be http or ws")
	case s.sp.kind != "chat" && s.sp.kind != "gift":
		return 0, errors.New("bench send: --kind must be chat or gift")
	case s.sp.rate < 0 || s.sp.inflight < 1:
		return 0, errors.New("bench send: --rate must be ≥ 0 and --inflight ≥ 1")
	case s.users != 0 && s.users < s.sp.writers:
		return 0, errors.New("bench send: --users must be at least --senders (or 0)")
	case s.users > s.sp.writers && s.sp.via != "http":
		return 0, errors.New("bench send: --users applies to --via http (a WebSocket writer is one user)")
	}
	return s.sp.writers, nil
}

// setup fetches the users' tokens (one per writer, or --users) and, with
// --via ws, connects the writers (not measured).
func (s *sendScenario) setup(r *runner) error {
	if err := r.initTokens(); err != nil {
		return err
	}
	var err error
	if s.toks, err = r.tokens(s.userPrefix, max(s.users, s.sp.writers)); err != nil || s.sp.via != "ws" {
		return err
	}
	run := &wsRun{t: r.t, room: s.room, timeout: s.timeout, maxFrame: s.maxFrame, send: &s.st,
		readerChecks: readerChecks{allowGaps: true, since: r.rep.StartedAt.UnixNano()}}
	for i, tok := range s.toks {
		c := &wsClient{run: run, id: i, token: tok, sem: make(chan struct{}, s.sp.inflight)}
		if err := c.dial(r.runCtx, 0); err != nil {
			for _, c := range s.clients {
				c.shutdown()
			}
			return fmt.Errorf("bench send: connecting writer %d: %s", i, dialLabel(err))
		}
		s.clients = append(s.clients, c)
		s.readers.Add(1)
		go func() {
			defer s.readers.Done()
			if err := c.readLoop(); !s.stopping.Load() {
				s.st.fail("ws closed: " + errLabel(err))
			}
		}()
	}
	return nil
}

func (s *sendScenario) estimate() time.Duration { return s.duration }

func (s *sendScenario) status(_ *runner, dt time.Duration) string {
	a := s.st.acked.Load()
	line := fmt.Sprintf("writers %d  sent %d  acks %s  p99 %s  errs %d",
		s.sp.writers, s.st.sent.Load(), rate(a-s.prevAcks, dt), ms(float64(s.st.lat.Quantile(0.99))/1e6), s.st.errs.Load())
	s.prevAcks = a
	return line
}

// measure sends for --duration; over WebSocket it then gives the last acks a
// moment (bounded) to arrive, inside the window.
func (s *sendScenario) measure(r *runner) {
	r.runWindow(func(win context.Context) {
		s.st.startWriters(r.runCtx, win, &s.writers, r.t, &s.common, &s.sp, s.sp.writers, s.toks, s.clients, r.winStart)
	})
	s.writers.Wait()
	if s.sp.via == "ws" && r.ctx.Err() == nil {
		r.waitUntil(time.Now().Add(min(s.timeout, 2*time.Second)), 20*time.Millisecond, func() bool {
			return s.st.acked.Load()+s.st.errs.Load() >= s.st.sent.Load()
		})
	}
	r.closeWindow()
	r.rep.Server = r.watch.finish(r.window)
}

func (s *sendScenario) stop(r *runner) {
	s.stopping.Store(true)
	for _, c := range s.clients {
		c.shutdown()
	}
	r.cancel()
	s.readers.Wait()
}

func (s *sendScenario) report(r *runner) {
	rep := r.rep
	for _, c := range s.clients {
		s.st.addSeqs(c.acks)
	}
	rep.Send = s.st.report(&s.sp, r.window)
	rep.Send.Users = max(s.users, s.sp.writers)
	if sv := rep.Server; sv != nil && sv.MeasurementProblem == "" {
		sv.USPerAck = round3(perUnit(sv.CPUSeconds*1e6, float64(rep.Send.Acked)))
	}
	r.violation(rep.Send.DupSeqs, "duplicate acked seq")
	if rep.Send.Acked == 0 && !rep.Interrupted {
		rep.Violations = append(rep.Violations, "no message was acknowledged")
	}
}
