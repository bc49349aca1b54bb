package app

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/quiz"
	"roomcast/internal/testutil"
)

// quizWindowMS is the answer window of tests that must act before a
// question's deadline: generous, because a busy machine can take seconds
// between a push and the last answer (1.5 s was missed under load). Tests
// wait for the deadline with testutil, so the window costs only waiting.
var quizWindowMS = int(10000 * testutil.Scale())

// quizHeartbeat outlasts a question's window: a player waiting for the
// deadline reads nothing meanwhile, so its client answers no ping.
var quizHeartbeat = 3 * time.Duration(quizWindowMS) * time.Millisecond

// quizBody is a 3-question activity: the answers are 1, 0, 2.
func quizBody(room string, prize int64, answerMS int) map[string]any {
	return map[string]any{"room": room, "title": "Friday quiz", "starts_at": "2026-12-01T20:00:00Z", "prize_cents": prize, "answer_ms": answerMS,
		"questions": []map[string]any{
			{"text": "2+2?", "options": []string{"3", "4"}, "answer": 1},
			{"text": "Capital of France?", "options": []string{"Paris", "Lyon", "Nice"}, "answer": 0},
			{"text": "Blue?", "options": []string{"red", "green", "blue", "pink"}, "answer": 2},
		}}
}

func createQuiz(t *testing.T, s *server, tok string, body map[string]any) quiz.View {
	t.Helper()
	var v quiz.View
	if code := s.do("POST", "/api/activities", tok, body, &v); code != 201 || v.Status != quiz.StatusScheduled || v.ID == "" {
		t.Fatalf("create activity: %d %+v", code, v)
	}
	return v
}

// TestQuizWholeActivity plays a whole activity on one node over real
// sockets: right, wrong, revived, late, twice, out of sequence, after
// elimination, not a player; sealed results, counts, winners and money.
func TestQuizWholeActivity(t *testing.T) {
	t.Parallel() // most of it is waiting for answer windows to close
	s := startServer(t, func(c *config.Config) { c.QuizDelay, c.Heartbeat = 200*time.Millisecond, quizHeartbeat })
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	anchor := s.createRoom("quiz1")
	viewer := s.token("viewer", "", 1)

	if code, c := errCode(t, s, "POST", "/api/activities", viewer, quizBody("quiz1", 100, quizWindowMS)); code != 403 || c != "forbidden" {
		t.Fatalf("a viewer creating: %d %s", code, c)
	}
	bad := quizBody("quiz1", 100, quizWindowMS)
	bad["questions"] = []map[string]any{{"text": "x", "options": []string{"only"}, "answer": 0}}
	if code, c := errCode(t, s, "POST", "/api/activities", anchor, bad); code != 400 || c != "bad_request" {
		t.Fatalf("one option: %d %s", code, c)
	}
	act := createQuiz(t, s, anchor, quizBody("quiz1", 100, quizWindowMS))
	id := act.ID
	var cards struct{ Cards int }
	if code := s.do("POST", "/api/admin/cards", testAdminKey, map[string]any{"user": "u2", "count": 2}, &cards); code != 200 || cards.Cards != 2 {
		t.Fatalf("grant cards: %d %+v", code, cards)
	}

	p1, p3, p5 := s.player(ctx, "quiz1", "u1"), s.player(ctx, "quiz1", "u3"), s.player(ctx, "quiz1", "u5")
	p2, p4 := s.player(ctx, "quiz1", "u2"), s.player(ctx, "quiz1", "u4")
	// A player who polls with a token instead of holding a WebSocket.
	poller := s.token("poller", "", 1)
	if code := s.do("GET", "/api/rooms/quiz1/messages?token="+poller, "", nil, nil); code != 200 {
		t.Fatalf("poll: %d", code)
	}
	if _, c := p1.answerWS(ctx, id, 1, 1); c != quiz.CodeNotRunning {
		t.Fatalf("answer before start: %q", c)
	}
	s.opStep(anchor, "/api/activities/"+id+"/start")
	if v := s.opStep(anchor, "/api/activities/"+id+"/start"); v.Status != quiz.StatusRunning {
		t.Fatalf("start again: %+v", v)
	}
	if code, c := errCode(t, s, "POST", "/api/activities/"+id+"/questions/2/push", anchor, nil); code != 409 || c != quiz.CodeOutOfOrder {
		t.Fatalf("push 2 first: %d %s", code, c)
	}
	s.opStep(anchor, "/api/activities/"+id+"/questions/1/push")
	s.opStep(anchor, "/api/activities/"+id+"/questions/1/push") // idempotent: sends nothing again
	late := s.player(ctx, "quiz1", "latecomer")

	m := p1.waitMsg(ctx, "quiz_question", 1)
	q1 := decodeData[quiz.QuestionData](t, m)
	if q1.Activity != id || q1.Count != 3 || q1.Text != "2+2?" || len(q1.Options) != 2 || q1.AnswerMS != int64(quizWindowMS) || len(q1.KeyHash) != 64 ||
		q1.Deadline < time.Now().UnixMilli() || strings.Contains(string(m.Data), `"answer"`) {
		t.Fatalf("quiz_question: %s", m.Data)
	}
	// Nobody, not even through GET, learns the answer before the reveal.
	var pub map[string]any
	s.do("GET", "/api/activities/"+id, "", nil, &pub)
	if raw := fmt.Sprint(pub); strings.Contains(raw, "answer:") || !strings.Contains(raw, "2+2?") || strings.Contains(raw, "Paris") {
		t.Fatalf("public view before the reveal: %v", raw)
	}

	sealed1, c := p1.answerWS(ctx, id, 1, 1)
	if c != "" {
		t.Fatalf("u1: %s", c)
	}
	if _, c := p1.answerWS(ctx, "", 1, 1); c != quiz.CodeAlreadyAnswered { // the frame may omit the activity
		t.Fatalf("u1 twice: %s", c)
	}
	sealed2, c := s.answerHTTP(p2.tok, id, 1, 0) // wrong, with cards: revived
	if c != "" {
		t.Fatal(c)
	}
	sealed3, _ := p3.answerWS(ctx, id, 1, 0) // wrong, no card: out
	sealed5, _ := s.answerHTTP(p5.tok, id, 1, 1)
	if _, c := s.answerHTTP(p5.tok, id, 1, 1); c != quiz.CodeAlreadyAnswered {
		t.Fatalf("u5 twice: %s", c)
	}
	if _, c := p5.answerWS(ctx, id, 2, 0); c != quiz.CodeNotCurrent {
		t.Fatalf("answering question 2 early: %s", c)
	}
	if _, c := s.answerHTTP(poller, id, 1, 1); c != "" {
		t.Fatalf("the polling player: %s", c)
	}
	if _, c := late.answerWS(ctx, id, 1, 1); c != quiz.CodeNotAPlayer {
		t.Fatalf("latecomer: %s", c)
	}
	if _, c := p3.answerWS(ctx, id, 1, 1); c != quiz.CodeEliminated {
		t.Fatalf("u3 after elimination: %s", c)
	}
	if _, c := s.answerHTTP(p4.tok, id, 1, 7); c != quiz.CodeInvalid {
		t.Fatalf("bad option: %s", c)
	}
	var counts quiz.Reveal
	if code := s.do("GET", "/api/activities/"+id+"/questions/1/counts", anchor, nil, &counts); code != 200 || fmt.Sprint(counts.Counts) != "[2 3]" || counts.Answers != 5 {
		t.Fatalf("counts: %d %+v", code, counts)
	}
	if code, _ := errCode(t, s, "GET", "/api/activities/"+id+"/questions/1/counts", viewer, nil); code != 403 {
		t.Fatalf("counts for a viewer: %d", code)
	}
	testutil.WaitFor(t, "question 1's deadline", 2*time.Duration(quizWindowMS)*time.Millisecond, func() bool { return time.Now().UnixMilli() > q1.Deadline })
	if _, c := p4.answerWS(ctx, id, 1, 1); c != quiz.CodeTooLate {
		t.Fatalf("u4 late: %s", c)
	}

	s.revealWhenDue(anchor, id, 1)
	r1 := decodeData[quiz.RevealData](t, p1.waitMsg(ctx, "quiz_reveal", 1))
	if r1.Answer != 1 || fmt.Sprint(r1.Counts) != "[2 3]" || r1.Alive != 4 || r1.Eliminated != 2 {
		t.Fatalf("quiz_reveal 1: %+v", r1)
	}
	for _, c := range []struct {
		sealed []byte
		want   quiz.Result
	}{
		{sealed1, quiz.Result{N: 1, Correct: true, Alive: true}},
		{sealed2, quiz.Result{N: 1, Revived: true, Alive: true, CardsLeft: 1}},
		{sealed3, quiz.Result{N: 1}},
		{sealed5, quiz.Result{N: 1, Correct: true, Alive: true}},
	} {
		if got := openSealed(t, q1, r1, c.sealed); got != c.want {
			t.Fatalf("sealed result %+v, want %+v", got, c.want)
		}
	}
	s.do("GET", "/api/activities/"+id, "", nil, &pub)
	if raw := fmt.Sprint(pub); !strings.Contains(raw, "answer:1") || strings.Count(raw, "answer:") != 1 {
		t.Fatalf("public view after reveal 1: %v", raw)
	}

	s.opStep(anchor, "/api/activities/"+id+"/questions/2/push")
	q2 := decodeData[quiz.QuestionData](t, p2.waitMsg(ctx, "quiz_question", 2))
	if q2.Text != "Capital of France?" || q2.N != 2 {
		t.Fatalf("question 2: %+v", q2)
	}
	if _, c := p4.answerWS(ctx, id, 2, 0); c != quiz.CodeOutOfSequence {
		t.Fatalf("u4 skipped question 1: %s", c)
	}
	if _, c := p3.answerWS(ctx, id, 2, 0); c != quiz.CodeEliminated {
		t.Fatalf("u3 out: %s", c)
	}
	for _, p := range []*quizPlayer{p1, p2, p5} {
		if _, c := p.answerWS(ctx, id, 2, 0); c != "" {
			t.Fatalf("%s question 2: %s", p.user, c)
		}
	}
	s.revealWhenDue(anchor, id, 2)
	// Another question's key does not open question 1's result.
	r2 := decodeData[quiz.RevealData](t, p2.waitMsg(ctx, "quiz_reveal", 2))
	key2, _ := base64.StdEncoding.DecodeString(r2.Key)
	if _, err := quiz.Open(key2, id, 1, sealed1); err == nil || len(key2) != 32 {
		t.Fatal("question 1's result opened with another key")
	}
	s.opStep(anchor, "/api/activities/"+id+"/questions/3/push")
	q3 := decodeData[quiz.QuestionData](t, p5.waitMsg(ctx, "quiz_question", 3))
	var sealedLast []byte
	for _, p := range []*quizPlayer{p1, p2, p5} {
		if sealedLast, c = p.answerWS(ctx, id, 3, 2); c != "" {
			t.Fatalf("%s question 3: %s", p.user, c)
		}
	}
	if code, c := errCode(t, s, "GET", "/api/activities/"+id+"/winners", "", nil); code != 409 || c != quiz.CodeNotEnded {
		t.Fatalf("winners before the end: %d %s", code, c)
	}
	v := s.revealWhenDue(anchor, id, 3)
	if v.Status != quiz.StatusSettled {
		t.Fatalf("status after the last reveal: %q", v.Status)
	}
	r3 := decodeData[quiz.RevealData](t, p5.waitMsg(ctx, "quiz_reveal", 3))
	if got := openSealed(t, q3, r3, sealedLast); !got.Correct || !got.Alive {
		t.Fatalf("last result %+v", got)
	}
	end := decodeData[quiz.EndData](t, p1.waitMsg(ctx, "quiz_end", 0))
	if end.Winners != 3 || end.PrizeEachCents != 33 {
		t.Fatalf("quiz_end %+v", end)
	}
	// Settlement again (the reveal repeated) pays nobody twice.
	s.opStep(anchor, "/api/activities/"+id+"/questions/3/reveal")
	var winners winnersAnswer
	if code := s.do("GET", "/api/activities/"+id+"/winners", "", nil, &winners); code != 200 || winners.TotalCents != 100 ||
		fmt.Sprint(winners.Winners) != "[{u1 34} {u2 33} {u5 33}]" {
		t.Fatalf("winners: %d %+v", code, winners)
	}
	var prizes struct {
		Prizes []struct {
			Activity    string    `json:"activity"`
			AmountCents int64     `json:"amount_cents"`
			Kind        string    `json:"kind"`
			At          time.Time `json:"at"`
		} `json:"prizes"`
	}
	if s.do("GET", "/api/me/prizes", p1.tok, nil, &prizes); len(prizes.Prizes) != 1 || prizes.Prizes[0].AmountCents != 34 ||
		prizes.Prizes[0].Kind != "quiz" || prizes.Prizes[0].Activity != id || prizes.Prizes[0].At.IsZero() {
		t.Fatalf("u1 prizes: %+v", prizes)
	}
	var me struct {
		User  string `json:"user"`
		Cards int    `json:"cards"`
	}
	if s.do("GET", "/api/me", p2.tok, nil, &me); me.User != "u2" || me.Cards != 1 {
		t.Fatalf("u2 after using a card: %+v", me)
	}
	var list struct{ Activities []quiz.View }
	if s.do("GET", "/api/rooms/quiz1/activities", "", nil, &list); len(list.Activities) != 1 || list.Activities[0].Status != quiz.StatusSettled {
		t.Fatalf("room activities: %+v", list)
	}

	// The room's next activity: an answer frame without an activity goes to it.
	next := createQuiz(t, s, anchor, quizBody("quiz1", 0, quizWindowMS)).ID
	if _, c := p1.answerWS(ctx, "", 1, 1); c != quiz.CodeNotRunning {
		t.Fatalf("answer between activities: %s", c)
	}
	s.opStep(anchor, "/api/activities/"+next+"/start")
	s.opStep(anchor, "/api/activities/"+next+"/questions/1/push")
	p1.waitMsg(ctx, "quiz_question", 1)
	if _, c := p1.answerWS(ctx, "", 1, 1); c != "" {
		t.Fatalf("answer to the next activity: %s", c)
	}
}

// TestQuizRestartKeepsState: a single node (SQLite) restarted in the middle
// of an activity keeps its players, answers and tallies, and the activity
// goes on to the right winners.
func TestQuizRestartKeepsState(t *testing.T) {
	t.Parallel() // most of it is waiting for answer windows to close
	dir := t.TempDir()
	mut := func(c *config.Config) { c.Data, c.QuizDelay = dir, 0 }
	s := startServer(t, mut)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	anchor := s.createRoom("quizr")
	id := createQuiz(t, s, anchor, quizBody("quizr", 7, quizWindowMS)).ID
	p1, p2, p3 := s.player(ctx, "quizr", "u1"), s.player(ctx, "quizr", "u2"), s.player(ctx, "quizr", "u3")
	s.opStep(anchor, "/api/activities/"+id+"/start")
	s.opStep(anchor, "/api/activities/"+id+"/questions/1/push")
	p1.waitMsg(ctx, "quiz_question", 1)
	for _, c := range []struct {
		p   *quizPlayer
		opt int
	}{{p1, 1}, {p2, 1}, {p3, 0}} {
		if _, code := s.answerHTTP(c.p.tok, id, 1, c.opt); code != "" {
			t.Fatal(code)
		}
	}
	if err := s.app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	s2 := startServer(t, mut)
	if _, c := s2.answerHTTP(p1.tok, id, 1, 1); c != quiz.CodeAlreadyAnswered {
		t.Fatalf("u1 after the restart: %s", c)
	}
	var counts quiz.Reveal
	if s2.do("GET", "/api/activities/"+id+"/questions/1/counts", anchor, nil, &counts); fmt.Sprint(counts.Counts) != "[1 2]" {
		t.Fatalf("counts after the restart: %+v", counts)
	}
	v := s2.revealWhenDue(anchor, id, 1)
	if v.Players != 3 || v.Alive != 2 {
		t.Fatalf("after reveal 1: %+v", v)
	}
	for _, q := range []struct{ n, opt int }{{2, 0}, {3, 2}} {
		s2.opStep(anchor, fmt.Sprintf("/api/activities/%s/questions/%d/push", id, q.n))
		for _, p := range []*quizPlayer{p1, p2} {
			if _, c := s2.answerHTTP(p.tok, id, q.n, q.opt); c != "" {
				t.Fatalf("%s question %d: %s", p.user, q.n, c)
			}
		}
		s2.revealWhenDue(anchor, id, q.n)
	}
	var winners winnersAnswer
	if s2.do("GET", "/api/activities/"+id+"/winners", "", nil, &winners); winners.TotalCents != 7 || fmt.Sprint(winners.Winners) != "[{u1 4} {u2 3}]" {
		t.Fatalf("winners: %+v", winners)
	}
}

// winnersAnswer is GET /api/activities/{id}/winners.
type winnersAnswer struct {
	Winners []struct {
		User        string `json:"user"`
		AmountCents int64  `json:"amount_cents"`
	} `json:"winners"`
	TotalCents int64 `json:"total_cents"`
}
