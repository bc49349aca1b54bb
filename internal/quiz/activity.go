// Package quiz runs live quizzes in rooms (issue 12, Q1–Q5, Q7): activities
// and their questions, the operator's steps (start, push, reveal), answers
// with revival cards, results sealed with a per-question key, the prize
// split to the cent and its settlement in SQL.
//
// Answers and money are decided in one place, the State seam, atomically:
// the memory State for one node, the Redis State (Lua scripts) for a
// cluster; both pass the same contract suite. The Service around it turns
// state changes into must-deliver room messages, cues in the live stream
// and SQL records; transports (HTTP, WebSocket frames) only call it.
package quiz

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"roomcast/internal/errs"
)

// Statuses of an activity.
const (
	StatusScheduled = "scheduled"
	StatusRunning   = "running"
	StatusEnded     = "ended"
	StatusSettled   = "settled"
)

// Limits of an activity definition.
const (
	MinOptions      = 2
	MaxOptions      = 4
	MaxQuestions    = 50
	DefaultAnswerMS = 10000
	maxTextRunes    = 500
	maxTitleRunes   = 200
	maxAnswerMS     = 10 * 60 * 1000
)

// Question is one question with its options and (server-only) answer.
type Question struct {
	Text    string   `json:"text"`
	Options []string `json:"options"`
	Answer  int      `json:"answer"`
}

// Activity is a quiz as created, with its red-packet rains (issue 13) and
// their packets computed at creation.
type Activity struct {
	ID         string     `json:"id"`
	Room       string     `json:"room"`
	Title      string     `json:"title"`
	StartsAt   time.Time  `json:"starts_at"`
	PrizeCents int64      `json:"prize_cents"`
	AnswerMS   int64      `json:"answer_ms"`
	Questions  []Question `json:"questions"`
	Rains      []Rain     `json:"rains,omitempty"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	// Secret derives the questions' sealing keys; it never leaves the server.
	Secret []byte `json:"secret"`
}

// CreateRequest is the body of POST /api/activities.
type CreateRequest struct {
	Room       string        `json:"room"`
	Title      string        `json:"title"`
	StartsAt   string        `json:"starts_at"`
	PrizeCents *int64        `json:"prize_cents"`
	AnswerMS   int64         `json:"answer_ms"`
	Questions  []Question    `json:"questions"`
	Rains      []RainRequest `json:"rains,omitempty"`
}

// Validate checks a create request and returns the activity it describes
// (without id, creator or secret).
func (r *CreateRequest) Validate() (*Activity, error) {
	bad := func(msg string) error { return errs.New(errs.BadRequest, msg) }
	if strings.TrimSpace(r.Room) == "" {
		return nil, bad("room is required")
	}
	title := strings.TrimSpace(r.Title)
	if title == "" {
		return nil, bad("title is required")
	}
	if utf8.RuneCountInString(title) > maxTitleRunes {
		return nil, bad("title is longer than 200 characters")
	}
	starts, err := time.Parse(time.RFC3339, r.StartsAt)
	if err != nil {
		return nil, bad("starts_at must be an RFC 3339 time (e.g. 2026-12-01T20:00:00Z)")
	}
	if r.PrizeCents == nil || *r.PrizeCents < 0 {
		return nil, bad("prize_cents must be an integer ≥ 0")
	}
	if r.AnswerMS == 0 {
		r.AnswerMS = DefaultAnswerMS
	}
	if r.AnswerMS < 100 || r.AnswerMS > maxAnswerMS {
		return nil, bad("answer_ms must be between 100 and 600000")
	}
	if len(r.Questions) < 1 || len(r.Questions) > MaxQuestions {
		return nil, bad("an activity has 1–50 questions")
	}
	for i, q := range r.Questions {
		n := strconv.Itoa(i + 1)
		if strings.TrimSpace(q.Text) == "" || utf8.RuneCountInString(q.Text) > maxTextRunes {
			return nil, bad("question " + n + ": text must be 1–500 characters")
		}
		if len(q.Options) < MinOptions || len(q.Options) > MaxOptions {
			return nil, bad("question " + n + ": 2–4 options")
		}
		for _, o := range q.Options {
			if strings.TrimSpace(o) == "" || utf8.RuneCountInString(o) > maxTextRunes {
				return nil, bad("question " + n + ": every option must be 1–500 characters")
			}
		}
		if q.Answer < 0 || q.Answer >= len(q.Options) {
			return nil, bad("question " + n + ": answer must be the index of one of its options")
		}
	}
	rains, err := validateRains(r.Rains)
	if err != nil {
		return nil, err
	}
	return &Activity{Room: r.Room, Title: title, StartsAt: starts.UTC(), PrizeCents: *r.PrizeCents,
		AnswerMS: r.AnswerMS, Questions: r.Questions, Rains: rains}, nil
}

// Rules is what the State needs of an activity to decide answers.
type Rules struct {
	ID       string
	Count    int   // questions
	Answers  []int // the correct option of each question
	Options  []int // the option count of each question
	AnswerMS int64 // answer window
	DelayMS  int64 // --quiz-delay: allowance for the stream's latency
	Revivals int   // cards a player may use in this activity (--quiz-revivals)
	Prize    int64 // prize_cents
}

// rules derives an activity's Rules.
func (a *Activity) rules(delay time.Duration, revivals int) Rules {
	r := Rules{ID: a.ID, Count: len(a.Questions), AnswerMS: a.AnswerMS, DelayMS: delay.Milliseconds(), Revivals: revivals, Prize: a.PrizeCents}
	for _, q := range a.Questions {
		r.Answers = append(r.Answers, q.Answer)
		r.Options = append(r.Options, len(q.Options))
	}
	return r
}
