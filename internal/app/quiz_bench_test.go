package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"testing"
	"time"

	"roomcast/internal/bench"
	"roomcast/internal/config"
)

// TestBenchQuiz runs `roomcast bench quiz` against a real node, with JSON
// and protobuf players: every answer acknowledged, every reveal received.
func TestBenchQuiz(t *testing.T) {
	t.Parallel() // most of it is waiting for answer windows to close
	s := startServer(t, func(c *config.Config) { c.QuizDelay = 0 })
	for _, format := range []string{"json", "proto"} {
		t.Run(format, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			var out bytes.Buffer
			// A window 30 players answer in on a busy machine (300 ms was missed).
			err := bench.Run(ctx, []string{"quiz", "--url", s.url, "--secret", testSecret, "--room", "bq" + format, "--players", "30",
				"--questions", "2", "--answer-ms", strconv.Itoa(quizWindowMS / 2), "--format", format, "--settle", "100ms", "--json", "--progress=false"}, &out, io.Discard)
			if err != nil {
				t.Fatalf("bench quiz: %v\n%s", err, out.String())
			}
			var rep bench.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			q := rep.Quiz
			if !rep.OK || q == nil || q.Connected != 30 || q.Answers != 60 || q.Refused != 0 || q.RevealReached != 60 || q.AnswersPerS <= 0 ||
				len(q.PerQuestion) != 2 || q.PerQuestion[0].Answers != 30 || q.PerQuestion[1].N != 2 {
				t.Fatalf("report: %s", out.String())
			}
		})
	}
}
