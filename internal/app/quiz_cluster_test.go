package app

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"roomcast/internal/quiz"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// TestQuizCluster runs an activity across three nodes on Redis and
// PostgreSQL with players on every node: enrollment everywhere, one answer
// for a player answering on two nodes at once, the activity going on after
// the node that started it is killed, and 1 cent split among 7 winners.
func TestQuizCluster(t *testing.T) {
	t.Parallel() // most of it is waiting for answer windows to close
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	nodes, cl := startNodes(t, 3, append(clusterArgs("redis://"+redistest.RedisAddr+"/0", prefix, redistest.Postgres(t)), "--quiz-delay", "300ms"))
	a, b, cc := cl[0], cl[1], cl[2]
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	anchor := a.createRoom("qc")
	id := createQuiz(t, a, anchor, quizBody("qc", 1, quizWindowMS)).ID

	var players []*quizPlayer
	for i := range 7 {
		players = append(players, cl[i%3].player(ctx, "qc", fmt.Sprint("u", i)))
	}
	a.opStep(anchor, "/api/activities/"+id+"/start")
	a.opStep(anchor, "/api/activities/"+id+"/questions/1/push")
	testutil.WaitFor(t, "7 players enrolled on three nodes", 20*time.Second, func() bool {
		var v quiz.View
		cc.do("GET", "/api/activities/"+id, "", nil, &v)
		return v.Players == 7
	})
	for _, p := range players {
		p.waitMsg(ctx, "quiz_question", 1)
	}
	// u0 answers on two nodes at the same moment: one answer counts.
	var wg sync.WaitGroup
	codes := make([]string, 2)
	for i, s := range []*server{b, cc} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, codes[i] = s.answerHTTP(players[0].tok, id, 1, 1)
		}()
	}
	wg.Wait()
	if !(codes[0] == "" && codes[1] == quiz.CodeAlreadyAnswered) && !(codes[1] == "" && codes[0] == quiz.CodeAlreadyAnswered) {
		t.Fatalf("two nodes at once: %q", codes)
	}
	for _, p := range players[1:] {
		if _, c := p.answerWS(ctx, id, 1, 1); c != "" {
			t.Fatalf("%s: %s", p.user, c)
		}
	}
	b.revealWhenDue(anchor, id, 1)
	for _, p := range players {
		if r := decodeData[quiz.RevealData](t, p.waitMsg(ctx, "quiz_reveal", 1)); r.Alive != 7 || r.Counts[1] != 7 {
			t.Fatalf("%s reveal: %+v", p.user, r)
		}
	}

	// The node that created and started the activity dies; the others go on.
	nodes[0].Kill()
	for _, q := range []struct{ n, opt int }{{2, 0}, {3, 2}} {
		cc.opStep(anchor, fmt.Sprintf("/api/activities/%s/questions/%d/push", id, q.n))
		for i, p := range players {
			s := cl[1+i%2] // players of the dead node answer over HTTP elsewhere
			if _, c := s.answerHTTP(p.tok, id, q.n, q.opt); c != "" {
				t.Fatalf("%s question %d: %s", p.user, q.n, c)
			}
		}
		b.revealWhenDue(anchor, id, q.n)
	}
	var w winnersAnswer
	if cc.do("GET", "/api/activities/"+id+"/winners", "", nil, &w); w.TotalCents != 1 || len(w.Winners) != 7 ||
		w.Winners[0].User != "u0" || w.Winners[0].AmountCents != 1 || w.Winners[6].AmountCents != 0 {
		t.Fatalf("winners: %+v", w)
	}
	var v quiz.View
	if b.do("GET", "/api/activities/"+id, "", nil, &v); v.Status != quiz.StatusSettled {
		t.Fatalf("status %q", v.Status)
	}
}
