package app

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/quiz"
	pb "roomcast/proto/roomcast/v1"
)

// tapsAnswer is a grab's answer with the taps extension.
type tapsAnswer struct {
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason"`
	Packets     *int   `json:"packets"`
	Taps        *int   `json:"taps"`
	Admitted    *int   `json:"admitted"`
}

// TestRainTaps: grabs carrying several taps, over HTTP, JSON and protobuf
// frames, from 30 users at once: taps out of range refused with
// bad_request, every packet paid once, the budget exactly, at most
// max_per_user a user, and the answers' sums equal to the status and to
// each user's prizes in SQL.
func TestRainTaps(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *config.Config) { c.RainRate = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	anchor := s.createRoom("raintaps")
	id := createQuiz(t, s, anchor, rainBody("raintaps", map[string]any{"budget_cents": 5000, "packets": 60, "max_per_user": 3,
		"duration_ms": rainMS})).ID
	path := "/api/activities/" + id + "/rains/0/grab"
	s.opStep(anchor, "/api/activities/"+id+"/rains/0/start")
	tok := s.token("bad", "", 1)
	for _, b := range []any{map[string]any{"taps": 0}, map[string]any{"taps": 21}, map[string]any{"taps": -1}} {
		if code, c := errCode(t, s, "POST", path, tok, b); code != 400 || c != "bad_request" {
			t.Fatalf("HTTP %v: %d %s", b, code, c)
		}
	}
	if code, c := errCode(t, s, "POST", path, tok, `{"taps":"x"}`); code != 400 || c != "bad_json" {
		t.Fatalf(`HTTP taps "x": %d %s`, code, c)
	}
	p := s.player(ctx, "raintaps", "wsj")
	for _, n := range []int{0, 21} {
		if err := p.c.write(ctx, map[string]any{"type": "grab", "id": "bad", "activity": id, "rain": 0, "taps": n}); err != nil {
			t.Fatal(err)
		}
		if f := grabReply(t, ctx, p); f["id"] != "bad" || f["error"].(map[string]any)["code"] != "bad_request" {
			t.Fatalf("JSON taps %d: %v", n, f)
		}
	}
	pc := s.protoPlayer(ctx, "raintaps", "wsp")
	if r := pc.call(ctx, &pb.Frame{Type: 4}, &pb.GrabRequest{Activity: id, Rain: 0, Taps: 21}); r.ErrorCode != "bad_request" {
		t.Fatalf("proto taps 21: %v", r)
	}

	var mu sync.Mutex
	won := map[string]int{}
	cents := map[string]int64{}
	add := func(user string, n, taps int, g tapsAnswer) {
		mu.Lock()
		defer mu.Unlock()
		if g.Packets == nil || *g.Packets < 0 || *g.Packets > n || *g.Taps != n || *g.Admitted != n ||
			(*g.Packets > 0) != (g.AmountCents > 0) || (*g.Packets > 0) == (g.Reason != "") {
			t.Errorf("%s: %d taps: %+v", user, n, g)
			return
		}
		won[user] += *g.Packets
		cents[user] += g.AmountCents
	}
	var wg sync.WaitGroup
	for u := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprint("t", u)
			tok := s.token(user, "", 1)
			for i := range 4 {
				n := 1 + (u+i)%5
				var g tapsAnswer
				if code := s.do("POST", path, tok, map[string]any{"taps": n}, &g); code != 200 {
					t.Errorf("%s: %d", user, code)
					return
				}
				add(user, n, n, g)
			}
		}()
	}
	for i := range 3 { // the WebSocket players, JSON and protobuf
		if err := p.c.write(ctx, map[string]any{"type": "grab", "id": fmt.Sprint("j", i), "activity": id, "rain": 0, "taps": 4}); err != nil {
			t.Fatal(err)
		}
		f := grabReply(t, ctx, p)
		g := tapsAnswer{AmountCents: int64(f["amount_cents"].(float64))}
		g.Reason, _ = f["reason"].(string)
		pk, tp, ad := int(f["packets"].(float64)), int(f["taps"].(float64)), int(f["admitted"].(float64))
		g.Packets, g.Taps, g.Admitted = &pk, &tp, &ad
		add("wsj", 4, 4, g)
		r := pc.call(ctx, &pb.Frame{Type: 4}, &pb.GrabRequest{Activity: id, Rain: 0, Taps: 4})
		ack := body(t, r, &pb.GrabAck{})
		pk2, tp2, ad2 := int(ack.Packets), int(ack.Taps), int(ack.Admitted)
		add("wsp", 4, 4, tapsAnswer{AmountCents: ack.AmountCents, Reason: ack.Reason, Packets: &pk2, Taps: &tp2, Admitted: &ad2})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	checkWon(t, won, cents, 3, 60, 5000)
	var st quiz.RainView
	s.do("GET", "/api/activities/"+id+"/rains/0", "", nil, &st)
	if st.PaidCents != 5000 || st.PacketsLeft != 0 || st.Winners != int64(len(won)-countZero(won)) {
		t.Fatalf("status %+v", st)
	}
	for u, c := range cents { // memory mode: each packet is in SQL before its winner is told
		var me struct {
			Total int64 `json:"prizes_total_cents"`
		}
		s.do("GET", "/api/me", s.token(u, "", 1), nil, &me)
		if me.Total != c {
			t.Fatalf("%s: prizes %d, won %d", u, me.Total, c)
		}
	}
}

// protoPlayer is user on room over a protobuf WebSocket, attached (its
// first batch read); closed when the test ends.
func (s *server) protoPlayer(ctx context.Context, room, user string) *protoClient {
	s.t.Helper()
	pc, _, err := s.dialProto(ctx, "room="+room+"&token="+s.token(user, "", 1), true)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(pc.close)
	if _, err := pc.batch(ctx); err != nil {
		s.t.Fatal(err)
	}
	return pc
}

// grabReply reads p's frames up to the next grab_ok or error.
func grabReply(t *testing.T, ctx context.Context, p *quizPlayer) map[string]any {
	t.Helper()
	for {
		_, data, err := p.c.conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.Unmarshal(data, &out)
		if out["type"] == "grab_ok" || out["type"] == "error" {
			return out
		}
	}
}

func countZero(m map[string]int) int {
	n := 0
	for _, v := range m {
		if v == 0 {
			n++
		}
	}
	return n
}

// TestRainTapsThrottled: with a bucket of one token (--rain-rate 10) a
// grab of 5 taps is admitted for 1, and the next, with the bucket empty,
// answers throttled with its taps named and none admitted — over HTTP
// and over a JSON frame (refused on the poller).
func TestRainTapsThrottled(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.RainRate = 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	anchor := s.createRoom("rainthr")
	id := createQuiz(t, s, anchor, rainBody("rainthr", map[string]any{"budget_cents": 100, "packets": 10, "duration_ms": rainMS})).ID
	s.opStep(anchor, "/api/activities/"+id+"/rains/0/start")
	path := "/api/activities/" + id + "/rains/0/grab"
	tok := s.token("thr", "", 1)
	var g tapsAnswer
	for g.Admitted == nil || *g.Admitted == 0 { // the bucket refills within 100 ms
		if code := s.do("POST", path, tok, map[string]any{"taps": 5}, &g); code != 200 {
			t.Fatalf("grab: %d", code)
		}
	}
	if *g.Admitted != 1 || *g.Taps != 5 || *g.Packets != 1 || g.AmountCents < 1 {
		t.Fatalf("5 taps, 1 token: %+v", g)
	}
	p := s.player(ctx, "rainthr", "thr2")
	if err := p.c.write(ctx, map[string]any{"type": "grab", "id": "x", "activity": id, "rain": 0, "taps": 7}); err != nil {
		t.Fatal(err)
	}
	f := grabReply(t, ctx, p)
	if f["reason"] == quiz.ReasonThrottled && (f["taps"] != 7.0 || f["admitted"] != 0.0 || f["packets"] != 0.0 || f["amount_cents"] != 0.0) {
		t.Fatalf("throttled: %v", f)
	}
	if f["reason"] != quiz.ReasonThrottled && (f["taps"] != 7.0 || f["admitted"].(float64) < 1) {
		t.Fatalf("admitted: %v", f)
	}
}
