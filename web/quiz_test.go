package web_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/config"
)

// TestQuizInTheBrowser plays a question end to end in headless Chromium: the
// viewer page plays the live stream over HTTP-FLV, shows the question when
// the player reaches its onQuizQuestion cue in the stream (not at the
// message's arrival), counts down, answers, and at the reveal checks the
// key against key_hash, decrypts the sealed result with WebCrypto and shows
// it with the counts and the winnings.
func TestQuizInTheBrowser(t *testing.T) {
	rtmpPort := freePort(t)
	s := startServer(t, func(c *config.Config) {
		c.RTMP = fmt.Sprintf("127.0.0.1:%d", rtmpPort)
		c.QuizDelay = time.Second
	})
	room, anchor := s.createRoom("quizshow", "Quiz night", "quinn")
	publish(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", rtmpPort, room.StreamKey))
	if !s.waitLive("quizshow", time.Minute) {
		t.Fatal("the room did not go live")
	}
	tb := newTab(t)
	tb.navigate(s.url + "/room/quizshow#token=" + s.token("pia", "Pia", auth.RoleViewer, 5))
	tb.wait(`document.body.dataset.transport === 'ws' && (() => { const v = document.querySelector('#video'); return v.readyState >= 3 && v.currentTime > 0; })()`, 30*time.Second)

	var act struct {
		ID string `json:"id"`
	}
	body := map[string]any{"room": "quizshow", "title": "Quiz night", "starts_at": "2026-12-01T20:00:00Z", "prize_cents": 500, "answer_ms": 15000,
		"questions": []map[string]any{{"text": "Which planet is red?", "options": []string{"Venus", "Mars", "Saturn"}, "answer": 1}}}
	if code := s.do("POST", "/api/activities", anchor, body, &act); code != 201 {
		t.Fatalf("create: %d", code)
	}
	for _, step := range []string{"start", "questions/1/push"} {
		if code := s.do("POST", "/api/activities/"+act.ID+"/"+step, anchor, nil, nil); code != 200 {
			t.Fatalf("%s: %d", step, code)
		}
	}
	// The question appears at its cue in the stream, with the countdown running.
	tb.wait(`!document.querySelector('#quiz').hidden && document.querySelector('.quiz-text').textContent === 'Which planet is red?'`, 15*time.Second)
	if sync := eval[string](tb, `document.querySelector('#quiz').dataset.sync`); sync != "cue" {
		t.Fatalf("the question was shown by %q, want the stream's cue", sync)
	}
	first := eval[string](tb, `document.querySelector('.quiz-count').textContent`)
	tb.wait(`document.querySelector('.quiz-count').textContent !== `+jsString(first), 5*time.Second)
	if !strings.HasSuffix(first, " s") {
		t.Fatalf("countdown %q", first)
	}
	tb.do(chromedpClick(`.quiz-opt[data-i="1"]`))
	tb.wait(`document.querySelector('.quiz-note').textContent.startsWith('Answer sealed')`, 10*time.Second)
	// Nothing in the page knows the answer before the reveal.
	if eval[bool](tb, `!!document.querySelector('.quiz-opt.right')`) {
		t.Fatal("the right option is marked before the reveal")
	}

	deadline := time.Now().Add(time.Minute)
	for s.do("POST", "/api/activities/"+act.ID+"/questions/1/reveal", anchor, nil, nil) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the reveal was never accepted")
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.wait(`document.querySelector('#quiz').dataset.result === 'correct' || !!document.querySelector('.quiz-end')`, 15*time.Second)
	tb.wait(`!!document.querySelector('.quiz-end') && document.querySelector('.quiz-end').textContent.includes('You won 5.00')`, 15*time.Second)
	if r := eval[string](tb, `document.querySelector('#quiz').dataset.result`); r != "correct" {
		t.Fatalf("the decrypted result is %q, want correct", r)
	}
	t.Logf("end: %s", eval[string](tb, `document.querySelector('.quiz-end').textContent`))
}

// TestStudioQuizConsole drives a quiz from the studio's console: create from
// the form, start, push, live counts, reveal, and the winners at the end.
func TestStudioQuizConsole(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.QuizDelay = 0 })
	_, anchor := s.createRoom("qstudio", "Quiz studio", "olga")
	viewer := newTab(t)
	vic := s.token("vic", "Vic", auth.RoleViewer, 5)
	viewer.navigate(s.url + "/room/qstudio#token=" + vic)
	viewer.wait(`document.body.dataset.transport === 'ws'`, 10*time.Second)
	s.waitAudience("qstudio", "vic") // present before the push, so enrolled as a player

	tb := newTab(t, regexp.MustCompile(`status of 409`)) // a reveal clicked before the deadline is refused (too_early)
	tb.navigate(s.url + "/studio#token=" + anchor)
	tb.wait(`!!document.querySelector('#quiz-create') && !document.querySelector('#dash').hidden`, 10*time.Second)
	tb.do(chromedpEval(`document.querySelector('#quiz-title').value = 'Console quiz';
		document.querySelector('#quiz-prize').value = '1.00';
		document.querySelector('#quiz-answer-ms').value = '10000';
		document.querySelector('#quiz-questions').value = 'Sky? | green | blue* | red';`))
	tb.do(chromedpClick(`#quiz-create button[type=submit]`))
	tb.wait(`document.querySelector('#quiz-state').textContent.includes('scheduled') && !document.querySelector('#quiz-start').disabled`, 10*time.Second)
	tb.do(chromedpClick(`#quiz-start`))
	tb.wait(`document.querySelector('#quiz-state').textContent.includes('running') && !document.querySelector('#quiz-push').disabled`, 10*time.Second)
	tb.do(chromedpClick(`#quiz-push`))
	// The viewer answers first: the answer window (10 s) runs from the push.
	viewer.wait(`!document.querySelector('#quiz').hidden && document.querySelector('.quiz-text').textContent === 'Sky?'`, 10*time.Second)
	viewer.do(chromedpClick(`.quiz-opt[data-i="1"]`))
	viewer.wait(`document.querySelector('.quiz-note').textContent.startsWith('Answer sealed')`, 10*time.Second)
	tb.wait(`document.querySelector('#quiz-current').textContent.includes('Sky?') && document.querySelector('#quiz-state').textContent.includes('players 1')`, 10*time.Second)
	tb.wait(`document.querySelector('#quiz-counts').textContent.includes('answers 1')`, 10*time.Second)
	deadline := time.Now().Add(time.Minute)
	for !eval[bool](tb, `document.querySelector('#quiz-state').textContent.includes('revealed 1')`) {
		if time.Now().After(deadline) {
			t.Fatalf("not revealed: %s / %s", eval[string](tb, `document.querySelector('#quiz-state').textContent`), eval[string](tb, `document.querySelector('#quiz-status').textContent`))
		}
		tb.do(chromedpClick(`#quiz-reveal`))
		time.Sleep(300 * time.Millisecond)
	}
	tb.wait(`document.querySelector('#quiz-winners').textContent.includes('vic — 1.00')`, 10*time.Second)
	viewer.wait(`document.querySelector('#quiz').dataset.result === 'correct'`, 10*time.Second)
}
