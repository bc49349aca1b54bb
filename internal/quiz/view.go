package quiz

import "time"

// View is an activity as GET /api/activities/{id} shows it. Answers appear
// only for revealed questions, except to the operator.
type View struct {
	ID         string         `json:"id"`
	Room       string         `json:"room"`
	Title      string         `json:"title"`
	StartsAt   time.Time      `json:"starts_at"`
	PrizeCents int64          `json:"prize_cents"`
	AnswerMS   int64          `json:"answer_ms"`
	Status     string         `json:"status"`
	Count      int            `json:"count"`
	Current    int            `json:"current"`
	Revealed   int            `json:"revealed"`
	Deadline   int64          `json:"deadline,omitempty"`
	Players    int64          `json:"players"`
	Alive      int64          `json:"alive"`
	Questions  []QuestionView `json:"questions"`
	Rains      []RainInfo     `json:"rains"`
}

// RainInfo is a rain as a View shows it (never its packets' amounts).
type RainInfo struct {
	Rain        int   `json:"rain"`
	BudgetCents int64 `json:"budget_cents"`
	Packets     int   `json:"packets"`
	MaxPerUser  int   `json:"max_per_user"`
	DurationMS  int64 `json:"duration_ms"`
}

// QuestionView is a question as a View shows it: the text and options once
// pushed (always to the operator), the answer once revealed.
type QuestionView struct {
	N       int      `json:"n"`
	Text    string   `json:"text,omitempty"`
	Options []string `json:"options,omitempty"`
	Answer  *int     `json:"answer,omitempty"`
}

func (s *Service) view(a *Activity, l Live, operator bool) *View {
	v := &View{ID: a.ID, Room: a.Room, Title: a.Title, StartsAt: a.StartsAt, PrizeCents: a.PrizeCents, AnswerMS: a.AnswerMS,
		Status: l.Status, Count: len(a.Questions), Current: l.Current, Revealed: l.Revealed, Deadline: l.Deadline,
		Players: l.Players, Alive: l.Alive, Questions: make([]QuestionView, len(a.Questions)), Rains: make([]RainInfo, len(a.Rains))}
	for k, r := range a.Rains {
		v.Rains[k] = RainInfo{Rain: k, BudgetCents: r.BudgetCents, Packets: r.Packets, MaxPerUser: r.MaxPerUser, DurationMS: r.DurationMS}
	}
	for i, q := range a.Questions {
		n := i + 1
		qv := QuestionView{N: n}
		if operator || n <= l.Current {
			qv.Text, qv.Options = q.Text, q.Options
		}
		if operator || n <= l.Revealed {
			ans := q.Answer
			qv.Answer = &ans
		}
		v.Questions[i] = qv
	}
	return v
}
