package app

import (
	"context"
	"errors"
	"log/slog"
	"roomcast/internal/rankings"
	"time"

	"roomcast/internal/bus"
	"roomcast/internal/config"
	"roomcast/internal/likes"
	"roomcast/internal/message"
	"roomcast/internal/metrics"
	"roomcast/internal/moderation"
	"roomcast/internal/placement"
	"roomcast/internal/presence"
	"roomcast/internal/quiz"
	"roomcast/internal/timeline"
)

// seams are the swappable parts: memory for one node, Redis for many.
type seams struct {
	tl       timeline.Timeline
	bus      bus.Bus
	presence presence.Presence
	likes    likes.Counter
	mod      moderation.State
	// placement starts the hot-room placement agent (cluster mode only;
	// nil in memory mode), reading room loads from loads.
	placement func(loads func() map[string]int) *placement.Agent
	quiz      quiz.State // nil: the app builds the memory state (it needs the store)
	rankings  rankings.Board
	// stale, in cluster mode, reports that Redis is unreachable (polls are
	// then served from the window, marked stale); nil on one node.
	stale   func() bool
	closers []func() error // in order of creation
}

func (s *seams) close(context.Context) error {
	var out []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		out = append(out, s.closers[i]())
	}
	return errors.Join(out...)
}

// newSeams picks the implementation from the config: --redis selects the
// cluster mode.
func newSeams(ctx context.Context, cfg *config.Config, rate config.Rate, m *metrics.Metrics, log *slog.Logger) (*seams, error) {
	if cfg.Redis != "" {
		return redisSeams(ctx, cfg, rate, m, log)
	}
	return memorySeams(cfg, rate), nil
}

// memorySeams is the single-node mode.
func memorySeams(cfg *config.Config, rate config.Rate) *seams {
	s := &seams{}
	mb := bus.NewMemory()
	s.bus = mb
	s.tl = timeline.NewMemory(timeline.Retention{MaxCount: cfg.RetentionCount, MaxAge: cfg.RetentionAge}, func(msg *message.Message) {
		_ = mb.Publish(context.Background(), bus.RoomTopic(msg.Room), bus.Event{Type: bus.EvMessage, Room: msg.Room, Msg: msg})
	})
	p := presence.NewMemory(presenceTTL(cfg))
	s.presence = p
	s.likes = likes.NewMemory()
	s.mod = moderation.NewMemory(rate.N, rate.Per)
	s.closers = []func() error{mb.Close, s.tl.Close, p.Close, s.likes.Close, s.mod.Close}
	return s
}

// presenceTTL is how long a poller counts as online after its last poll:
// three of the longest poll intervals.
func presenceTTL(cfg *config.Config) time.Duration {
	return 3 * time.Duration(maxPollMS(cfg)) * time.Millisecond
}
