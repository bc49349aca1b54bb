package app

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/quiz"
)

// TestQuizAnswerOnceAcrossPaths: in memory mode most WebSocket answers are
// decided on the connection's reader (quiz.Service.AnswerNow), the others
// on a handler goroutine or over HTTP. A user answering the same question
// at the same moment from two connections and over HTTP gets exactly one
// sealed result, which opens to the outcome of the option that was taken,
// and already_answered for the rest; the tally counts one answer each.
func TestQuizAnswerOnceAcrossPaths(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *config.Config) { c.QuizDelay, c.Heartbeat = 200*time.Millisecond, quizHeartbeat })
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	anchor := s.createRoom("once1")
	const users = 8
	var a, b []*quizPlayer
	for i := range users {
		u := "u" + strconv.Itoa(i)
		a = append(a, s.player(ctx, "once1", u))
		b = append(b, s.player(ctx, "once1", u)) // the same user on a second connection
	}
	warm := s.player(ctx, "once1", "warm")
	id := createQuiz(t, s, anchor, quizBody("once1", 100, quizWindowMS)).ID
	s.opStep(anchor, "/api/activities/"+id+"/start")
	s.opStep(anchor, "/api/activities/"+id+"/questions/1/push")
	q := decodeData[quiz.QuestionData](t, warm.waitMsg(ctx, "quiz_question", 1))
	// The first answer of a question on a node makes its cipher; the
	// answers after it can be decided on the reader.
	if _, c := warm.answerWS(ctx, "", 1, 1); c != "" {
		t.Fatalf("warm: %s", c)
	}
	sealed := make([][]byte, users)
	picked := make([]int, users)
	counts := []int64{0, 1} // warm's answer
	for i := range users {
		opt := i % 2 // half right (1), half wrong without a card (0)
		ida := a[i].sendAnswer(ctx, "", 1, opt)
		idb := b[i].sendAnswer(ctx, id, 1, 1-opt)
		sh, ch := s.answerHTTP(a[i].tok, id, 1, opt)
		sa, ca := a[i].awaitAnswer(ctx, ida)
		sb, cb := b[i].awaitAnswer(ctx, idb)
		accepted := 0
		for k, c := range []string{ca, cb, ch} {
			if c == "" {
				accepted++
				sealed[i], picked[i] = [][]byte{sa, sb, sh}[k], []int{opt, 1 - opt, opt}[k]
			}
		}
		if accepted != 1 {
			t.Fatalf("user %d: %d answers accepted (%q %q %q), want 1", i, accepted, ca, cb, ch)
		}
		// The others: already answered, or (checked first) out, after a
		// wrong answer without a card.
		refusal := quiz.CodeAlreadyAnswered
		if picked[i] != 1 {
			refusal = quiz.CodeEliminated
		}
		for _, c := range []string{ca, cb, ch} {
			if c != "" && c != refusal {
				t.Fatalf("user %d picked %d: code %q, want %q", i, picked[i], c, refusal)
			}
		}
		counts[picked[i]]++
	}
	var c quiz.Reveal
	if code := s.do("GET", "/api/activities/"+id+"/questions/1/counts", anchor, nil, &c); code != 200 ||
		fmt.Sprint(c.Counts) != fmt.Sprint(counts) || c.Answers != users+1 {
		t.Fatalf("counts: %d %+v, want %v", code, c, counts)
	}
	s.revealWhenDue(anchor, id, 1)
	r := decodeData[quiz.RevealData](t, warm.waitMsg(ctx, "quiz_reveal", 1))
	for i := range users {
		res := openSealed(t, q, r, sealed[i])
		if res.N != 1 || res.Correct != (picked[i] == 1) || res.Alive != res.Correct {
			t.Fatalf("user %d picked %d: %+v", i, picked[i], res)
		}
	}
}
