package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/encoding/protowire"
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
	common
	noDrain
	players, perS, taps, packets int
	budget, durationMS           int64
	format                       string

	admin   string
	toks    []string
	clients []*rainClient
	wg      sync.WaitGroup
	http    *http.Client

	connected, attached atomic.Int64
	go_                 atomic.Bool  // tap
	sent, answered      atomic.Int64 // taps
	won, cents          atomic.Int64
	errMu               sync.Mutex
	reasons             map[string]uint64

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

func (s *rainScenario) base() *common { return &s.common }

func (s *rainScenario) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.players, "players", 1000, "players (WebSocket connections)")
	fs.IntVar(&s.perS, "rate", 2000, "connections opened per second (0 = all at once)")
	fs.IntVar(&s.taps, "taps", 5, "taps per second per player")
	fs.IntVar(&s.packets, "packets", 1000, "packets in the rain")
	fs.Int64Var(&s.budget, "budget", 100000, "the rain's budget in cents")
	fs.Int64Var(&s.durationMS, "rain-ms", 10000, "the rain's duration_ms")
	fs.StringVar(&s.format, "format", "json", "json or proto (the players' WebSocket encoding)")
}

func (s *rainScenario) check() (int, error) {
	switch {
	case s.players < 1 || s.taps < 1 || s.taps > 100:
		return 0, errors.New("bench rain: --players must be ≥ 1, --taps 1–100")
	case s.format != "json" && s.format != "proto":
		return 0, errors.New(`bench rain: --format must be "json" or "proto"`)
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
	s.reasons = map[string]uint64{}
	s.http = &http.Client{Timeout: s.timeout}
	var err error
	if s.admin, err = operatorSetup(&s.common, s.http, "bench rain"); err != nil {
		return err
	}
	if s.toks, err = r.tokens("bench-r", s.players); err != nil {
		return err
	}
	s.clients = make([]*rainClient, s.players)
	for i := range s.clients {
		s.clients[i] = &rainClient{s: s}
	}
	return nil
}

func (s *rainScenario) ramp(r *runner) {
	r.rampUp(s.players, s.perS, func(i int) {
		s.wg.Add(2)
		go s.clients[i].run(r.runCtx, s.toks[i])
	}, func() {
		r.waitUntil(time.Now().Add(60*time.Second), 50*time.Millisecond, func() bool { return s.attached.Load() >= int64(s.players) })
	})
	s.rep.Connected = int(s.attached.Load())
}

func (s *rainScenario) note(reason string) {
	s.errMu.Lock()
	s.reasons[reason]++
	s.errMu.Unlock()
}

// measure creates the activity, starts the rain and lets the players tap
// until it ends, then waits for the last answers.
func (s *rainScenario) measure(r *runner) {
	r.phase.Store("run")
	r.watch.start()
	defer r.closeWindow()
	code, body, err := opCall(s.http, s.url, "POST", "/api/activities", s.admin, map[string]any{"room": s.room, "title": "bench rain",
		"starts_at": time.Now().UTC().Format(time.RFC3339), "prize_cents": 0,
		"questions": []map[string]any{{"text": "q", "options": []string{"a", "b"}, "answer": 0}},
		"rains":     []map[string]any{{"budget_cents": s.budget, "packets": s.packets, "duration_ms": s.durationMS}}})
	var act struct{ ID string }
	if err != nil || code != 201 || json.Unmarshal(body, &act) != nil {
		s.note(fmt.Sprintf("create %d %.80s", code, body))
		return
	}
	s.rep.Activity = act.ID
	for _, c := range s.clients {
		c.activity = act.ID
	}
	cpu0 := serverCPU(r)
	r.winStart = time.Now()
	if code, body, _ := opCall(s.http, s.url, "POST", "/api/activities/"+act.ID+"/rains/0/start", s.admin, nil); code != 200 {
		s.note(fmt.Sprintf("start %d %.80s", code, body))
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
	if code, body, _ := opCall(s.http, s.url, "GET", "/api/activities/"+act.ID+"/rains/0", s.admin, nil); code == 200 {
		_ = json.Unmarshal(body, &st)
	}
	s.rep.StatusPaid = st.PaidCents
}

func (s *rainScenario) stop(r *runner) {
	r.cancel()
	for _, c := range s.clients {
		c.close()
	}
	s.wg.Wait()
}

func (s *rainScenario) report(r *runner) {
	s.rep.Players, s.rep.Format, s.rep.TapsPerPlayer = s.players, s.format, s.taps
	s.rep.PacketsWon, s.rep.CentsPaid = uint64(s.won.Load()), s.cents.Load()
	s.errMu.Lock()
	s.rep.Reasons = s.reasons
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

// rainClient is one player: a reader counting the answers and a tapper
// sending --taps grabs a second while the rain runs.
type rainClient struct {
	s        *rainScenario
	activity string
	mu       sync.Mutex
	conn     net.Conn
	done     bool
}

func (c *rainClient) close() {
	c.mu.Lock()
	c.done = true
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()
}

func (c *rainClient) run(ctx context.Context, tok string) {
	defer c.s.wg.Done()
	s := c.s
	conn, rw, err := dialPlayer(ctx, &s.common, tok, s.format)
	if err != nil {
		s.wg.Done()
		s.note("dial: " + dialLabel(err))
		return
	}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		conn.Close()
		s.wg.Done()
		return
	}
	c.conn = conn
	c.mu.Unlock()
	s.connected.Add(1)
	go c.tap(ctx, conn)
	attached := false
	for {
		data, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			return
		}
		if !attached {
			attached = true
			s.attached.Add(1)
		}
		if s.format == "proto" {
			c.onProto(data)
		} else {
			c.onJSON(data)
		}
	}
}

// tap sends grabs at --taps a second while the rain runs.
func (c *rainClient) tap(ctx context.Context, conn net.Conn) {
	defer c.s.wg.Done()
	s := c.s
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
		var payload []byte
		op := ws.OpText
		if s.format == "proto" {
			seq++
			body, _ := proto.Marshal(&pb.GrabRequest{Activity: c.activity, Rain: 0})
			fb, _ := proto.Marshal(&pb.Frame{Type: 4, Seq: seq, Body: body})
			payload, op = append(protowire.AppendVarint(nil, uint64(len(fb))), fb...), ws.OpBinary
		} else {
			payload = []byte(`{"type":"grab","activity":"` + c.activity + `","rain":0}`)
		}
		s.sent.Add(1)
		if err := wsutil.WriteClientMessage(conn, op, payload); err != nil {
			s.note("write")
			return
		}
	}
}

func (c *rainClient) answer(amount int64, reason string) {
	s := c.s
	s.answered.Add(1)
	if amount > 0 {
		s.won.Add(1)
		s.cents.Add(amount)
		reason = "won"
	}
	s.note(reason)
}

func (c *rainClient) onJSON(data []byte) {
	switch {
	case bytes.HasPrefix(data, []byte(`{"type":"grab_ok"`)):
		var g struct {
			AmountCents int64  `json:"amount_cents"`
			Reason      string `json:"reason"`
		}
		_ = json.Unmarshal(data, &g)
		c.answer(g.AmountCents, g.Reason)
	case bytes.HasPrefix(data, []byte(`{"type":"error"`)):
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		c.answer(0, "error "+e.Error.Code)
	}
}

func (c *rainClient) onProto(data []byte) {
	for len(data) > 0 {
		n, k := protowire.ConsumeVarint(data)
		if k < 0 || n > uint64(len(data)-k) {
			return
		}
		var f pb.Frame
		if proto.Unmarshal(data[k:k+int(n)], &f) != nil {
			return
		}
		data = data[k+int(n):]
		if f.Kind != pb.Kind_RESPONSE || f.Type != 4 {
			continue
		}
		if f.Code != 0 {
			c.answer(0, "error "+f.ErrorCode)
			continue
		}
		var g pb.GrabAck
		_ = proto.Unmarshal(f.Body, &g)
		c.answer(g.AmountCents, g.Reason)
	}
}
