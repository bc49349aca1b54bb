package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
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
// are measured too). Like the web viewer (web/static/js/rain.js), a player
// sends its taps together: a tap goes at once if the last frame left
// --frame-ms ago, else it waits for that window to close with the taps
// after it, one grab frame {"taps":N} for them all; --frame-ms 0 sends one
// frame per tap, naming no taps (the protocol before taps existed). It
// reports taps and frames offered (sent) and served (answered: packets, or
// a reason), the server CPU per tap and per frame (--pid), packets won and
// cents paid, and checks them against the rain's status.
type rainScenario struct {
	activityPlayers    // notes: the frames' outcomes and the errors
	taps, packets      int
	frameMS            int
	budget, durationMS int64
	activity           string // set before go_

	go_                    atomic.Bool  // tap
	sent, answered         atomic.Int64 // taps
	frames, framesAnswered atomic.Int64
	admitted, won, cents   atomic.Int64

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
	FrameMS          int               `json:"frame_ms"` // a player's window for gathering taps (0: a frame per tap)
	Taps             uint64            `json:"taps"`     // sent
	Answered         uint64            `json:"answered"` // taps answered (by grab_ok / GrabAck)
	TapsPerS         float64           `json:"taps_per_s_offered"`
	ServedPerS       float64           `json:"taps_per_s_served"`
	Frames           uint64            `json:"frames"`          // grab frames sent
	FramesAnswered   uint64            `json:"frames_answered"` // grab_ok / GrabAck / error received
	FramesPerS       float64           `json:"frames_per_s_offered"`
	FramesServedPerS float64           `json:"frames_per_s_served"`
	TapsAdmitted     uint64            `json:"taps_admitted"` // by the node's bucket
	Reasons          map[string]uint64 `json:"reasons"`       // per frame: "won", "throttled", "empty", "limit", "ended", errors
	PacketsWon       uint64            `json:"packets_won"`
	CentsPaid        int64             `json:"cents_paid"`
	StatusPaid       int64             `json:"status_paid_cents"` // GET …/rains/0 after the rain
	ServerCPUS       float64           `json:"server_cpu_s,omitempty"`
	USCPUPerTap      float64           `json:"us_cpu_per_tap,omitempty"`
	TapsPerCPUSecond float64           `json:"taps_per_cpu_s,omitempty"`
	USCPUPerFrame    float64           `json:"us_cpu_per_frame,omitempty"`
}

func (s *rainScenario) flags(fs *flag.FlagSet) {
	s.playerFlags(fs)
	fs.IntVar(&s.taps, "taps", 5, "taps per second per player")
	fs.IntVar(&s.packets, "packets", 1000, "packets in the rain")
	fs.Int64Var(&s.budget, "budget", 100000, "the rain's budget in cents")
	fs.Int64Var(&s.durationMS, "rain-ms", 10000, "the rain's duration_ms")
	fs.IntVar(&s.frameMS, "frame-ms", defaultFrameMS,
		"a player's taps within this window go in one grab frame, as the web viewer sends them; 0: a frame per tap")
}

// defaultFrameMS is the web viewer's window (FRAME_MS in web/static/js/rain.js).
const defaultFrameMS = 500

// maxFrameTaps is the most taps a grab frame carries (quiz.MaxGrabTaps).
const maxFrameTaps = 20

func (s *rainScenario) check() (int, error) {
	switch {
	case s.players < 1 || s.taps < 1 || s.taps > 100:
		return 0, errors.New("bench rain: --players must be ≥ 1, --taps 1–100")
	case s.frameMS < 0 || s.frameMS > 5000:
		return 0, errors.New("bench rain: --frame-ms must be 0–5000")
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
	return fmt.Sprintf("%s  connected %d/%d  taps %d  answered %d  frames %d/%d  won %d", r.phase.Load(), s.connected.Load(), s.players,
		s.sent.Load(), s.answered.Load(), s.framesAnswered.Load(), s.frames.Load(), s.won.Load())
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
	r.waitUntil(time.Now().Add(10*time.Second), 5*time.Millisecond, func() bool { return s.framesAnswered.Load() >= s.frames.Load() })
	win := time.Since(r.winStart)
	cpu := serverCPU(r) - cpu0
	s.rep.WindowS = round3(win.Seconds())
	s.rep.Taps, s.rep.Answered = uint64(s.sent.Load()), uint64(s.answered.Load())
	s.rep.Frames, s.rep.FramesAnswered = uint64(s.frames.Load()), uint64(s.framesAnswered.Load())
	s.rep.TapsAdmitted = uint64(s.admitted.Load())
	s.rep.TapsPerS = round1(float64(s.rep.Taps) / win.Seconds())
	s.rep.ServedPerS = round1(float64(s.rep.Answered) / win.Seconds())
	s.rep.FramesPerS = round1(float64(s.rep.Frames) / win.Seconds())
	s.rep.FramesServedPerS = round1(float64(s.rep.FramesAnswered) / win.Seconds())
	if cpu > 0 && s.rep.Answered > 0 && s.rep.FramesAnswered > 0 {
		s.rep.ServerCPUS = round3(cpu.Seconds())
		s.rep.USCPUPerTap = round3(float64(cpu.Microseconds()) / float64(s.rep.Answered))
		s.rep.TapsPerCPUSecond = round1(float64(s.rep.Answered) / cpu.Seconds())
		s.rep.USCPUPerFrame = round3(float64(cpu.Microseconds()) / float64(s.rep.FramesAnswered))
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
	s.rep.Players, s.rep.Format, s.rep.TapsPerPlayer, s.rep.FrameMS = s.players, s.format, s.taps, s.frameMS
	s.rep.PacketsWon, s.rep.CentsPaid = uint64(s.won.Load()), s.cents.Load()
	s.errMu.Lock()
	s.rep.Reasons = s.errs
	s.errMu.Unlock()
	r.rep.Rain = &s.rep
	r.rep.Server = r.watch.finish(r.window)
	r.violation(uint64(s.players-s.rep.Connected), "players not connected")
	r.violation(s.rep.Frames-min(s.rep.Frames, s.rep.FramesAnswered), "grab frames not answered")
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
	// A connection's frames are answered in order: inflight holds the taps
	// of each frame sent and not yet answered, so that an answer that does
	// not name its taps (an error, a frame per tap) counts the right number.
	inflight := make(chan int, 1024)
	s.wg.Add(1)
	go s.tap(ctx, conn, inflight)
	s.read(rw, func(data []byte) {
		if s.format == "proto" {
			s.onProto(data, inflight)
		} else {
			s.onJSON(data, inflight)
		}
	})
}

// tap taps --taps times a second while the rain runs and sends the taps
// as the web viewer does: at once if the last frame left --frame-ms ago,
// else when that window closes, all the taps since in one frame.
func (s *rainScenario) tap(ctx context.Context, conn net.Conn, inflight chan<- int) {
	defer s.wg.Done()
	t := time.NewTicker(time.Second / time.Duration(s.taps))
	defer t.Stop()
	window := time.Duration(s.frameMS) * time.Millisecond
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	var seq uint32
	var last time.Time
	pending, waiting := 0, false
	send := func() bool {
		n := pending
		pending, last = 0, time.Now()
		if n == 0 || !s.go_.Load() {
			return true
		}
		if err := s.sendGrab(conn, &seq, n, inflight); err != nil {
			s.noteErr("write")
			return false
		}
		return true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			waiting = false
			if !send() {
				return
			}
			continue
		case <-t.C:
		}
		if !s.go_.Load() {
			pending = 0
			continue
		}
		pending++
		switch {
		case window == 0 || pending >= maxFrameTaps || (!waiting && time.Since(last) >= window):
			if waiting {
				flush.Stop()
				waiting = false
			}
			if !send() {
				return
			}
		case !waiting:
			flush.Reset(window - time.Since(last))
			waiting = true
		}
	}
}

// sendGrab sends one grab frame of n taps (--frame-ms 0: a frame naming
// no taps).
func (s *rainScenario) sendGrab(conn net.Conn, seq *uint32, n int, inflight chan<- int) error {
	req := &pb.GrabRequest{Activity: s.activity, Rain: 0}
	js := `{"type":"grab","activity":"` + s.activity + `","rain":0}`
	if s.frameMS > 0 {
		req.Taps = int32(n)
		js = `{"type":"grab","activity":"` + s.activity + `","rain":0,"taps":` + strconv.Itoa(n) + `}`
	}
	payload, op := s.request(4, seq, req, js)
	s.sent.Add(int64(n))
	s.frames.Add(1)
	select {
	case inflight <- n:
	default: // 1,024 frames unanswered: counted as one tap each
	}
	return wsutil.WriteClientMessage(conn, op, payload)
}

// answer counts the answer to the oldest frame in flight: taps 0 is an
// answer naming no taps (a frame that named none, one tap with a packet
// if amount > 0; or an error: the frame's taps, none admitted).
func (s *rainScenario) answer(inflight <-chan int, amount int64, reason string, packets, taps, admitted int) {
	sent := 1
	select {
	case sent = <-inflight:
	default:
	}
	if taps == 0 {
		taps, admitted, packets = sent, sent, 0
		if reason == "throttled" || strings.HasPrefix(reason, "error") {
			admitted = 0
		}
		if amount > 0 {
			packets = 1
		}
	}
	s.framesAnswered.Add(1)
	s.answered.Add(int64(taps))
	s.admitted.Add(int64(admitted))
	if amount > 0 {
		s.won.Add(int64(packets))
		s.cents.Add(amount)
		reason = "won"
	}
	s.noteErr(reason)
}

func (s *rainScenario) onJSON(data []byte, inflight <-chan int) {
	switch {
	case isJSONType(data, "grab_ok"):
		var g struct {
			AmountCents int64  `json:"amount_cents"`
			Reason      string `json:"reason"`
			Packets     int    `json:"packets"`
			Taps        int    `json:"taps"`
			Admitted    int    `json:"admitted"`
		}
		_ = json.Unmarshal(data, &g)
		s.answer(inflight, g.AmountCents, g.Reason, g.Packets, g.Taps, g.Admitted)
	case isJSONType(data, "error"):
		s.answer(inflight, 0, "error "+jsonErrorCode(data), 0, 0, 0)
	}
}

func (s *rainScenario) onProto(data []byte, inflight <-chan int) {
	eachFrame(data, func(f *pb.Frame) bool {
		if f.Kind != pb.Kind_RESPONSE || f.Type != 4 {
			return true
		}
		if f.Code != 0 {
			s.answer(inflight, 0, "error "+f.ErrorCode, 0, 0, 0)
			return true
		}
		var g pb.GrabAck
		_ = proto.Unmarshal(f.Body, &g)
		s.answer(inflight, g.AmountCents, g.Reason, int(g.Packets), int(g.Taps), int(g.Admitted))
		return true
	})
}
