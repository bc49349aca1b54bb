package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/proto"

	pb "roomcast/proto/roomcast/v1"
)

// rainScenario is `roomcast bench rain` (issue 13, Q6/Q8): N players
// connected over WebSocket (JSON or protobuf) tap a red-packet rain the
// bench starts as the operator, each --taps times a second for the rain's
// duration (ignoring the server's throttle, so the token bucket's refusals
// are measured too). It reports taps/s offered (sent) and served (answered:
// a packet, or a reason), the server CPU per tap (--pid), packets won and
// cents paid, and checks them against the rain's status.
type rainScenario struct {
	activityPlayers    // notes: the answers' reasons and the errors
	taps, packets      int
	budget, durationMS int64
	activity           string // set before go_

	go_            atomic.Bool  // tap
	sent, answered atomic.Int64 // taps
	won, cents     atomic.Int64

	rep RainReport
}

// RainReport is bench rain's section of the report.
type RainReport struct {
	Players          int               `json:"players"`
	Connected        int               `json:"connected"`
	Format           string            `json:"format"`
	TapsPerPlayer    int               `json:"taps_per_player_per_s"`
	Activity         string            `json:"activity"`
	WindowS          float64           `json:"window_s"`
	Taps             uint64            `json:"taps"`     // sent
	Answered         uint64            `json:"answered"` // grab_ok / GrabAck received
	TapsPerS         float64           `json:"taps_per_s_offered"`
	ServedPerS       float64           `json:"taps_per_s_served"`
	Reasons          map[string]uint64 `json:"reasons"` // "won", "throttled", "empty", "limit", "ended", errors
	PacketsWon       uint64            `json:"packets_won"`
	CentsPaid        int64             `json:"cents_paid"`
	StatusPaid       int64             `json:"status_paid_cents"` // GET …/rains/0 after the rain
	ServerCPUS       float64           `json:"server_cpu_s,omitempty"`
	USCPUPerTap      float64           `json:"us_cpu_per_tap,omitempty"`
	TapsPerCPUSecond float64           `json:"taps_per_cpu_s,omitempty"`
}

func (s *rainScenario) flags(fs *flag.FlagSet) {
	s.playerFlags(fs)
	fs.IntVar(&s.taps, "taps", 5, "taps per second per player")
	fs.IntVar(&s.packets, "packets", 1000, "packets in the rain")
	fs.Int64Var(&s.budget, "budget", 100000, "the rain's budget in cents")
	fs.Int64Var(&s.durationMS, "rain-ms", 10000, "the rain's duration_ms")
}

func (s *rainScenario) check() (int, error) {
	switch {
	case s.players < 1 || s.taps < 1 || s.taps > 100:
		return 0, errors.New("bench rain: --players must be ≥ 1, --taps 1–100")
	case !s.formatOK():
		return 0, errFormat("bench rain")
	case s.secret == "":
		return 0, errors.New("bench rain: --secret is required (the bench starts the rain as an admin)")
	}
	return s.players + 4, nil
}

func (s *rainScenario) estimate() time.Duration {
	return rampTime(s.players, s.perS) + time.Duration(s.durationMS)*time.Millisecond + 5*time.Second
}

func (s *rainScenario) status(r *runner, dt time.Duration) string {
	return fmt.Sprintf("%s  connected %d/%d  taps %d  answered %d  won %d", r.phase.Load(), s.connected.Load(), s.players,
		s.sent.Load(), s.answered.Load(), s.won.Load())
}

func (s *rainScenario) setup(r *runner) error {
	return s.setupPlayers(r, "bench rain", "bench-r")
}

func (s *rainScenario) ramp(r *runner) {
	s.rep.Connected = s.rampPlayers(r, s.runPlayer)
}

// measure creates the activity, starts the rain and lets the players tap
// until it ends, then waits for the last answers.
func (s *rainScenario) measure(r *runner) {
	r.phase.Store("run")
	r.watch.start()
	defer r.closeWindow()
	code, body, err := s.call("POST", "/api/activities", map[string]any{"room": s.room, "title": "bench rain",
		"starts_at": time.Now().UTC().Format(time.RFC3339), "prize_cents": 0,
		"questions": []map[string]any{{"text": "q", "options": []string{"a", "b"}, "answer": 0}},
		"rains":     []map[string]any{{"budget_cents": s.budget, "packets": s.packets, "duration_ms": s.durationMS}}})
	var act struct{ ID string }
	if err != nil || code != 201 || json.Unmarshal(body, &act) != nil {
		s.noteErr(fmt.Sprintf("create %d %.80s", code, body))
		return
	}
	s.rep.Activity = act.ID
	s.activity = act.ID
	cpu0 := serverCPU(r)
	r.winStart = time.Now()
	if code, body, _ := s.call("POST", "/api/activities/"+act.ID+"/rains/0/start", nil); code != 200 {
		s.noteErr(fmt.Sprintf("start %d %.80s", code, body))
		return
	}
	s.go_.Store(true)
	sleepCtx(r.runCtx, time.Duration(s.durationMS)*time.Millisecond)
	s.go_.Store(false)
	r.waitUntil(time.Now().Add(10*time.Second), 5*time.Millisecond, func() bool { return s.answered.Load() >= s.sent.Load() })
	win := time.Since(r.winStart)
	cpu := serverCPU(r) - cpu0
	s.rep.WindowS = round3(win.Seconds())
	s.rep.Taps, s.rep.Answered = uint64(s.sent.Load()), uint64(s.answered.Load())
	s.rep.TapsPerS = round1(float64(s.rep.Taps) / win.Seconds())
	s.rep.ServedPerS = round1(float64(s.rep.Answered) / win.Seconds())
	if cpu > 0 && s.rep.Answered > 0 {
		s.rep.ServerCPUS = round3(cpu.Seconds())
		s.rep.USCPUPerTap = round3(float64(cpu.Microseconds()) / float64(s.rep.Answered))
		s.rep.TapsPerCPUSecond = round1(float64(s.rep.Answered) / cpu.Seconds())
	}
	var st struct {
		PaidCents int64 `json:"paid_cents"`
	}
	if code, body, _ := s.call("GET", "/api/activities/"+act.ID+"/rains/0", nil); code == 200 {
		_ = json.Unmarshal(body, &st)
	}
	s.rep.StatusPaid = st.PaidCents
}

func (s *rainScenario) report(r *runner) {
	s.rep.Players, s.rep.Format, s.rep.TapsPerPlayer = s.players, s.format, s.taps
	s.rep.PacketsWon, s.rep.CentsPaid = uint64(s.won.Load()), s.cents.Load()
	s.errMu.Lock()
	s.rep.Reasons = s.errs
	s.errMu.Unlock()
	r.rep.Rain = &s.rep
	r.rep.Server = r.watch.finish(r.window)
	r.violation(uint64(s.players-s.rep.Connected), "players not connected")
	r.violation(s.rep.Taps-min(s.rep.Taps, s.rep.Answered), "taps not answered")
	if s.rep.CentsPaid > s.budget || s.rep.CentsPaid > s.rep.StatusPaid {
		r.violation(1, "cents won above the budget or the rain's paid_cents")
	}
	if s.rep.PacketsWon == uint64(s.packets) && s.rep.CentsPaid != s.budget {
		r.violation(1, "every packet won but the cents differ from the budget")
	}
}

// runPlayer is player i: a reader counting the answers and a tapper
// sending --taps grabs a second while the rain runs.
func (s *rainScenario) runPlayer(ctx context.Context, i int) {
	conn, rw, ok := s.connect(ctx, i)
	if !ok {
		return
	}
	s.wg.Add(1)
	go s.tap(ctx, conn)
	s.read(rw, func(data []byte) {
		if s.format == "proto" {
			s.onProto(data)
		} else {
			s.onJSON(data)
		}
	})
}

// tap sends grabs at --taps a second while the rain runs.
func (s *rainScenario) tap(ctx context.Context, conn net.Conn) {
	defer s.wg.Done()
	t := time.NewTicker(time.Second / time.Duration(s.taps))
	defer t.Stop()
	var seq uint32
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.go_.Load() {
			continue
		}
		payload, op := s.request(4, &seq, &pb.GrabRequest{Activity: s.activity, Rain: 0},
			`{"type":"grab","activity":"`+s.activity+`","rain":0}`)
		s.sent.Add(1)
		if err := wsutil.WriteClientMessage(conn, op, payload); err != nil {
			s.noteErr("write")
			return
		}
	}
}

func (s *rainScenario) answer(amount int64, reason string) {
	s.answered.Add(1)
	if amount > 0 {
		s.won.Add(1)
		s.cents.Add(amount)
		reason = "won"
	}
	s.noteErr(reason)
}

func (s *rainScenario) onJSON(data []byte) {
	switch {
	case isJSONType(data, "grab_ok"):
		var g struct {
			AmountCents int64  `json:"amount_cents"`
			Reason      string `json:"reason"`
		}
		_ = json.Unmarshal(data, &g)
		s.answer(g.AmountCents, g.Reason)
	case isJSONType(data, "error"):
		s.answer(0, "error "+jsonErrorCode(data))
	}
}

func (s *rainScenario) onProto(data []byte) {
	eachFrame(data, func(f *pb.Frame) bool {
		if f.Kind != pb.Kind_RESPONSE || f.Type != 4 {
			return true
		}
		if f.Code != 0 {
			s.answer(0, "error "+f.ErrorCode)
			return true
		}
		var g pb.GrabAck
		_ = proto.Unmarshal(f.Body, &g)
		s.answer(g.AmountCents, g.Reason)
		return true
	})
}
