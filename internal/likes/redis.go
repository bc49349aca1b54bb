package likes

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/rediscall"
)

// Redis is the Counter of a cluster (issue 5): one INCRBY per Add on
// PREFIX{room}:likes, and totals read at most once per MaxAge per room per
// node (the fan-out asks every second for every room it serves).
type Redis struct {
	c   rueidis.Client
	cfg RedisConfig
	now func() time.Time

	mu     sync.Mutex
	totals map[string]cachedTotal // guarded by mu
}

var _ Counter = (*Redis)(nil)

type cachedTotal struct {
	n  int64
	at time.Time
}

// RedisConfig configures a Redis Counter. Zero values mean the defaults.
type RedisConfig struct {
	Prefix string         // key prefix; default "rc:"
	MaxAge time.Duration  // how old a cached total may be; default 1s
	Call   rediscall.Func // nil: commands run directly
}

// NewRedis returns a Counter on c. It does not own c.
func NewRedis(c rueidis.Client, cfg RedisConfig) *Redis {
	if cfg.Prefix == "" {
		cfg.Prefix = "rc:"
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = time.Second
	}
	return &Redis{c: c, cfg: cfg, now: time.Now, totals: map[string]cachedTotal{}}
}

func (l *Redis) key(room string) string { return l.cfg.Prefix + "{" + room + "}:likes" }

func (l *Redis) remember(room string, n int64) {
	l.mu.Lock()
	l.totals[room] = cachedTotal{n: n, at: l.now()}
	if len(l.totals) > 100000 { // bound the cache: forget stale entries
		for k, v := range l.totals {
			if l.now().Sub(v.at) > l.cfg.MaxAge {
				delete(l.totals, k)
			}
		}
	}
	l.mu.Unlock()
}

// Add implements Counter.
func (l *Redis) Add(ctx context.Context, room string, n int64) (int64, error) {
	var total int64
	err := l.cfg.Call.Do(ctx, "likes_add", 1, func(ctx context.Context) error {
		var err error
		total, err = l.c.Do(ctx, l.c.B().Incrby().Key(l.key(room)).Increment(n).Build()).AsInt64()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("likes: add to %s: %w", room, err)
	}
	l.remember(room, total)
	return total, nil
}

// Total implements Counter.
func (l *Redis) Total(ctx context.Context, room string) (int64, error) {
	l.mu.Lock()
	t, ok := l.totals[room]
	l.mu.Unlock()
	if ok && l.now().Sub(t.at) < l.cfg.MaxAge {
		return t.n, nil
	}
	var total int64
	err := l.cfg.Call.Do(ctx, "likes_total", 1, func(ctx context.Context) error {
		var err error
		total, err = l.c.Do(ctx, l.c.B().Get().Key(l.key(room)).Build()).AsInt64()
		if rueidis.IsRedisNil(err) {
			total, err = 0, nil
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("likes: total of %s: %w", room, err)
	}
	l.remember(room, total)
	return total, nil
}

// Close implements Counter. The client belongs to the caller.
func (l *Redis) Close() error { return nil }
