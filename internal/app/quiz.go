package app

import (
	"context"
	"errors"
	"roomcast/internal/invite"

	"roomcast/internal/config"
	"roomcast/internal/errs"
	"roomcast/internal/quiz"
)

// newQuiz builds the quiz (issue 12) on the node's seams: its State (Redis
// in cluster mode, else memory with snapshots in the SQL store), the
// message service for its room messages, the presence for its players and
// the media server for cues in the live stream.
func newQuiz(ctx context.Context, cfg *config.Config, a *App, sm *seams) (*quiz.Service, error) {
	errs.Register(quiz.Statuses)
	errs.Register(invite.Statuses)
	state := sm.quiz
	if state == nil {
		m, err := quiz.NewMemory(ctx, a.Store, a.Log)
		if err != nil {
			return nil, err
		}
		state = m
	}
	locals, ok := a.presence.(quiz.Locals)
	if !ok {
		state.Close()
		return nil, errors.New("quiz: the presence cannot list a room's local users")
	}
	s, err := quiz.New(quiz.Config{Delay: cfg.QuizDelay, Revivals: cfg.QuizRevivals, RainRate: cfg.RainRate}, quiz.Deps{
		State: state, Store: a.Store, Rooms: a.Rooms, Msgs: a.Service, Bus: a.bus, Locals: locals, Cues: a.Media, Online: a.presence, Log: a.Log,
	})
	if err != nil {
		state.Close()
		return nil, err
	}
	return s, nil
}
