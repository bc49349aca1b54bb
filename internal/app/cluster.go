package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"roomcast/internal/rankings"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/config"
	"roomcast/internal/fanout"
	"roomcast/internal/likes"
	"roomcast/internal/metrics"
	"roomcast/internal/moderation"
	"roomcast/internal/placement"
	"roomcast/internal/presence"
	"roomcast/internal/quiz"
	"roomcast/internal/redisgate"
	"roomcast/internal/timeline"
)

// redisSeams is the multi-node mode (--redis, issue 5): timeline, bus,
// presence, likes and moderation state all live in Redis (standalone or
// Cluster), behind one client and one fail-fast gate (package redisgate).
func redisSeams(ctx context.Context, cfg *config.Config, rate config.Rate, m *metrics.Metrics, log *slog.Logger) (*seams, error) {
	opt, err := redisgate.Options(cfg.Redis)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(cfg.RedisPrefix, "{}") { // braces would move the rooms' hash tags
		return nil, fmt.Errorf("--redis-prefix %q: no { or } allowed", cfg.RedisPrefix)
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("--redis %v: %w", opt.InitAddress, err) // the URL may hold a password
	}
	prefix := cfg.RedisPrefix
	if prefix == "" {
		prefix = timeline.DefaultPrefix
	}
	g, err := redisgate.New(client, redisgate.Config{Metrics: m, Log: log, InPoll: fanout.InPoll})
	if err != nil {
		client.Close()
		return nil, err
	}
	s := &seams{stale: g.Down, closers: []func() error{func() error { g.Close(); client.Close(); return nil }}}
	tl := timeline.NewRedis(client, timeline.RedisConfig{Prefix: prefix, Call: g.Call,
		Retention: timeline.Retention{MaxCount: cfg.RetentionCount, MaxAge: cfg.RetentionAge}, Sweep: time.Minute})
	s.tl = tl
	s.closers = append(s.closers, tl.Close)
	rb, err := bus.NewRedis(client, bus.RedisConfig{Prefix: prefix, Call: g.Call, Log: log,
		RoomChannel: func(room string) string { return timeline.RedisChannel(prefix, room) }})
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	s.bus = rb
	s.closers = append(s.closers, rb.Close)
	g.OnUp(rb.ResyncAll)
	host, _ := os.Hostname()
	p := presence.NewRedis(client, presence.RedisConfig{Prefix: prefix, NodeID: host + "-" + auth.RandomHex(3),
		TTL: presenceTTL(cfg), Audience: 500, Call: g.Call, Log: log})
	s.presence = p
	s.likes = likes.NewRedis(client, likes.RedisConfig{Prefix: prefix, Call: g.Call})
	s.closers = append(s.closers, p.Close, s.likes.Close)
	// Mutes and kicks are cached per node, kept current by the bus; the rate
	// limit is per node unless --rate-limit-scope cluster (issue 14).
	mod, err := moderation.NewRedis(client, rate.N, rate.Per, moderation.RedisConfig{Prefix: prefix, Call: g.Call, Bus: rb,
		SharedRate: cfg.RateLimitScope == "cluster"})
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	s.mod = mod
	s.closers = append(s.closers, s.mod.Close)
	s.quiz = quiz.NewRedis(client, quiz.RedisConfig{Prefix: prefix, Call: g.Call})
	s.rankings = rankings.NewRedis(client, prefix, g.Call)
	s.placement = func(loads func() map[string]int) *placement.Agent {
		id := cfg.Advertise
		if id == "" {
			id = host + "-" + auth.RandomHex(3)
		}
		return placement.NewAgent(client, id, placement.AgentConfig{Prefix: prefix, URL: cfg.Advertise, Weight: cfg.Weight,
			Placement: placement.Config{Hot: cfg.HotRoom, Balance: cfg.PlacementBalance}, Loads: loads, Call: g.Call, Log: log, Reg: m.Reg})
	}
	log.Info("cluster mode", "redis", opt.InitAddress, "mode", client.Mode(), "prefix", prefix)
	return s, nil
}
