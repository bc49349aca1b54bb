package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"roomcast/internal/bench"
	"roomcast/internal/config"
	"roomcast/internal/quiz"
	"roomcast/internal/testutil"
	pb "roomcast/proto/roomcast/v1"
)

// rainMS is the duration of a rain that tests grab from many times before it
// ends: generous, because a busy machine serves the grabs slowly (tests wait
// for the end with testutil, so it costs only waiting).
var rainMS = int(15000 * testutil.Scale())

// rainBody is quizBody with rains.
func rainBody(room string, rains ...map[string]any) map[string]any {
	b := quizBody(room, 100, 1500)
	b["rains"] = rains
	return b
}

// checkWon checks what users were told they won: at most maxPer packets
// each, packets and cents in all.
func checkWon(t *testing.T, packets map[string]int, cents map[string]int64, maxPer, wantPackets int, wantCents int64) {
	t.Helper()
	var paid int64
	total := 0
	for u, n := range packets {
		if n > maxPer {
			t.Fatalf("%s won %d packets (max %d)", u, n, maxPer)
		}
		total += n
		paid += cents[u]
	}
	if paid != wantCents || total != wantPackets {
		t.Fatalf("paid %d in %d packets, want %d in %d", paid, total, wantCents, wantPackets)
	}
}

type grabAnswer struct {
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason"`
}

func (s *server) grabHTTP(tok, activity string, k int) (int, grabAnswer) {
	s.t.Helper()
	var g grabAnswer
	code := s.do("POST", fmt.Sprintf("/api/activities/%s/rains/%d/grab", activity, k), tok, nil, &g)
	return code, g
}

// TestRainOverHTTP runs a rain on one node: refusals at creation, start
// (idempotent, with its must-deliver message), 40 users grabbing at once
// until the packets run out, the per-user limit, the end, and the packets
// in SQL adding up to the budget in /api/me and /api/me/prizes.
func TestRainOverHTTP(t *testing.T) {
	t.Parallel() // most of it is waiting for the rain to end
	s := startServer(t, func(c *config.Config) { c.RainRate = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	anchor := s.createRoom("rain1")
	for name, r := range map[string]map[string]any{
		"impossible": {"budget_cents": 10, "packets": 11},
		"negative":   {"budget_cents": -100, "packets": 1},
		"no packets": {"budget_cents": 100, "packets": 0},
	} {
		if code, c := errCode(t, s, "POST", "/api/activities", anchor, rainBody("rain1", r)); code != 400 || c != "bad_request" {
			t.Fatalf("%s rain: %d %s", name, code, c)
		}
	}
	act := createQuiz(t, s, anchor, rainBody("rain1", map[string]any{"budget_cents": 1000, "packets": 30, "duration_ms": rainMS}))
	id := act.ID
	viewer := s.token("viewer", "", 1)
	p := s.player(ctx, "rain1", "watcher")

	if code, c := errCode(t, s, "POST", "/api/activities/"+id+"/rains/0/grab", viewer, nil); code != 409 || c != quiz.CodeRainNotStarted {
		t.Fatalf("grab before start: %d %s", code, c)
	}
	if code, c := errCode(t, s, "POST", "/api/activities/"+id+"/rains/1/grab", viewer, nil); code != 404 || c != quiz.CodeUnknownRain {
		t.Fatalf("unknown rain: %d %s", code, c)
	}
	if code, c := errCode(t, s, "POST", "/api/activities/nope/rains/0/grab", viewer, nil); code != 404 || c != "not_found" {
		t.Fatalf("unknown activity: %d %s", code, c)
	}
	if code, c := errCode(t, s, "POST", "/api/activities/"+id+"/rains/0/grab", "", nil); code != 401 || c != "unauthorized" {
		t.Fatalf("grab without a token: %d %s", code, c)
	}
	if code, c := errCode(t, s, "POST", "/api/activities/"+id+"/rains/0/start", viewer, nil); code != 403 || c != "forbidden" {
		t.Fatalf("a viewer starting: %d %s", code, c)
	}
	var v1, v2 quiz.RainView
	if code := s.do("POST", "/api/activities/"+id+"/rains/0/start", anchor, nil, &v1); code != 200 || v1.Status != quiz.StatusRunning || v1.PacketsLeft != 30 {
		t.Fatalf("start: %d %+v", code, v1)
	}
	if code := s.do("POST", "/api/activities/"+id+"/rains/0/start", anchor, nil, &v2); code != 200 || v2.EndsAt != v1.EndsAt {
		t.Fatalf("start again: %d %+v vs %+v", code, v2, v1)
	}
	m := p.waitMsg(ctx, "red_packet_rain", 0)
	d := decodeData[quiz.RainData](t, m)
	if d.Activity != id || d.Rain != 0 || d.DurationMS != int64(rainMS) || d.EndsAt != v1.EndsAt || d.Throttle <= 0 || d.Throttle > 1 {
		t.Fatalf("red_packet_rain %+v", d)
	}

	// 40 users tap 4 times each at once: 160 grabs for 30 packets, 3 a user at most.
	won := map[string]int64{}
	count := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for u := range 40 {
		user := fmt.Sprint("g", u)
		tok := s.token(user, "", 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				code, g := s.grabHTTP(tok, id, 0)
				mu.Lock()
				if code != 200 || (g.AmountCents == 0) == (g.Reason == "") {
					mu.Unlock()
					t.Errorf("%s grab: %d %+v", user, code, g)
					return
				}
				won[user] += g.AmountCents
				if g.AmountCents > 0 {
					count[user]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	checkWon(t, count, won, 3, 30, 1000)
	if code, g := s.grabHTTP(viewer, id, 0); code != 200 || g.Reason != quiz.ReasonEmpty {
		t.Fatalf("grab when empty: %d %+v", code, g)
	}
	testutil.WaitFor(t, "the rain to end", 2*time.Duration(rainMS)*time.Millisecond, func() bool {
		_, g := s.grabHTTP(viewer, id, 0)
		return g.Reason == quiz.ReasonEnded
	})
	var st quiz.RainView
	testutil.WaitFor(t, "the rain settled in SQL", 30*time.Second, func() bool {
		return s.do("GET", "/api/activities/"+id+"/rains/0", "", nil, &st) == 200 && st.Status == quiz.StatusSettled
	})
	if st.PaidCents != 1000 || st.PacketsLeft != 0 || st.BudgetCents != 1000 || st.Winners != int64(len(count)) || st.Grabs < 161 {
		t.Fatalf("status %+v (winners %d)", st, len(count))
	}
	var total int64
	for u, cents := range won {
		var me struct {
			User             string `json:"user"`
			PrizesTotalCents int64  `json:"prizes_total_cents"`
		}
		var prizes struct {
			Prizes []struct {
				Activity    string `json:"activity"`
				Kind        string `json:"kind"`
				AmountCents int64  `json:"amount_cents"`
				Rain        *int   `json:"rain"`
			} `json:"prizes"`
		}
		tok := s.token(u, "", 1)
		if code := s.do("GET", "/api/me", tok, nil, &me); code != 200 || me.PrizesTotalCents != cents {
			t.Fatalf("%s /api/me: %d %+v want %d", u, code, me, cents)
		}
		s.do("GET", "/api/me/prizes", tok, nil, &prizes)
		var sum int64
		for _, p := range prizes.Prizes {
			if p.Kind != "rain" || p.Activity != id || p.Rain == nil || *p.Rain != 0 {
				t.Fatalf("%s prize %+v", u, p)
			}
			sum += p.AmountCents
		}
		if sum != cents || len(prizes.Prizes) != count[u] {
			t.Fatalf("%s prizes %+v, want %d cents in %d", u, prizes, cents, count[u])
		}
		total += sum
	}
	if total != 1000 {
		t.Fatalf("SQL records add up to %d", total)
	}
}

// TestRainThrottled: past --rain-rate a node answers throttled at once.
func TestRainThrottled(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RainRate = 1 })
	anchor := s.createRoom("rain2")
	act := createQuiz(t, s, anchor, rainBody("rain2", map[string]any{"budget_cents": 100, "packets": 10}))
	s.opStep(anchor, "/api/activities/"+act.ID+"/rains/0/start")
	tok := s.token("tapper", "", 1)
	reasons := map[string]int{}
	for range 20 {
		code, g := s.grabHTTP(tok, act.ID, 0)
		if code != 200 {
			t.Fatalf("grab: %d", code)
		}
		reasons[g.Reason]++
	}
	if reasons[quiz.ReasonThrottled] < 15 || reasons[""] < 1 {
		t.Fatalf("reasons %v", reasons)
	}
}

// TestRainGrabFrames: grabs over the JSON and protobuf WebSocket frames,
// and malformed grab frames refused with clear codes.
func TestRainGrabFrames(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RainRate = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	anchor := s.createRoom("rainws")
	id := createQuiz(t, s, anchor, rainBody("rainws", map[string]any{"budget_cents": 10, "packets": 4, "max_per_user": 2})).ID
	p := s.player(ctx, "rainws", "jsonp")
	pc := s.protoPlayer(ctx, "rainws", "protop")
	grab := func(f map[string]any) map[string]any {
		t.Helper()
		if err := p.c.write(ctx, f); err != nil {
			t.Fatal(err)
		}
		for {
			_, data, err := p.c.conn.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var out map[string]any
			_ = json.Unmarshal(data, &out)
			if e, ok := out["error"].(map[string]any); ok {
				out["code"] = e["code"]
			}
			if out["type"] == "grab_ok" || out["type"] == "error" {
				return out
			}
		}
	}
	if out := grab(map[string]any{"type": "grab", "id": "g0", "activity": id, "rain": 0}); out["code"] != quiz.CodeRainNotStarted || out["id"] != "g0" {
		t.Fatalf("before start: %v", out)
	}
	if out := grab(map[string]any{"type": "grab", "id": "g1", "activity": id}); out["code"] != "bad_request" {
		t.Fatalf("no rain: %v", out)
	}
	if out := grab(map[string]any{"type": "grab", "id": "g2", "rain": 0}); out["code"] != "bad_request" {
		t.Fatalf("no activity: %v", out)
	}
	if out := grab(map[string]any{"type": "grab", "id": "g3", "activity": id, "rain": "x"}); out["code"] != "bad_json" {
		t.Fatalf("rain not a number: %v", out)
	}
	if out := grab(map[string]any{"type": "grab", "id": "g4", "activity": id, "rain": 7}); out["code"] != quiz.CodeUnknownRain {
		t.Fatalf("unknown rain: %v", out)
	}
	if r := pc.call(ctx, &pb.Frame{Type: 4, Body: []byte{0xff, 0xff}}, nil); r.ErrorCode != "bad_frame" || r.Code != 112 {
		t.Fatalf("proto garbage: %v", r)
	}
	s.opStep(anchor, "/api/activities/"+id+"/rains/0/start")
	var paid float64
	for i := range 3 {
		out := grab(map[string]any{"type": "grab", "id": fmt.Sprint("w", i), "activity": id, "rain": 0})
		if out["type"] != "grab_ok" || out["activity"] != id || out["rain"] != float64(0) {
			t.Fatalf("grab %d: %v", i, out)
		}
		if i < 2 && out["amount_cents"].(float64) < 1 || i == 2 && out["reason"] != quiz.ReasonLimit {
			t.Fatalf("grab %d: %v", i, out)
		}
		paid += out["amount_cents"].(float64)
	}
	for i := range 3 {
		r := pc.call(ctx, &pb.Frame{Type: 4}, &pb.GrabRequest{Activity: id, Rain: 0})
		ack := body(t, r, &pb.GrabAck{})
		if r.Code != 0 || ack.Activity != id || (i < 2) != (ack.AmountCents > 0) || (i == 2 && ack.Reason != quiz.ReasonEmpty) {
			t.Fatalf("proto grab %d: %v %v", i, r, ack)
		}
		paid += float64(ack.AmountCents)
	}
	if paid != 10 {
		t.Fatalf("paid %v of 10 with all 4 packets taken", paid)
	}
}

// TestBenchRain runs `roomcast bench rain` against a real node, JSON and
// protobuf: every tap answered, every packet won, the budget paid exactly
// and equal to the rain's status.
func TestBenchRain(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RainRate = 0 })
	// The web viewer's frames (several taps each, the default) and a frame per tap.
	for _, run := range []struct{ format, frameMS string }{{"json", "500"}, {"proto", "500"}, {"json", "0"}, {"proto", "0"}} {
		format := run.format
		t.Run(format+"/frame-ms="+run.frameMS, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := bench.Run(ctx, []string{"rain", "--url", s.url, "--secret", testSecret, "--room", "br" + format + run.frameMS, "--players", "20",
				"--taps", "5", "--packets", "30", "--budget", "3000", "--rain-ms", "1500", "--format", format, "--frame-ms", run.frameMS,
				"--json", "--progress=false"}, &out, io.Discard)
			if err != nil {
				t.Fatalf("bench rain: %v\n%s", err, out.String())
			}
			var rep bench.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			r := rep.Rain
			if !rep.OK || r == nil || r.Connected != 20 || r.Taps == 0 || r.Answered != r.Taps || r.PacketsWon != 30 ||
				r.CentsPaid != 3000 || r.StatusPaid != 3000 || r.TapsPerS <= 0 || r.FramesAnswered != r.Frames || r.TapsAdmitted != r.Taps ||
				(run.frameMS == "0") != (r.Frames == r.Taps) {
				t.Fatalf("report: %s", out.String())
			}
		})
	}
}
