package moderation

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/rediscall"
)

// Redis is the State of a cluster (issue 5): rate limits, mutes and kicks
// hold on every node.
//
//	PREFIX{u:user}:rl         hash tk (tokens), ts (ms): the user's token bucket
//	PREFIX{room}:mute:user    set until the mute ends (PXAT)
//	PREFIX{room}:kick:user    set until the re-entry block ends (PXAT)
//
// The token bucket is one Lua script using Redis's clock, so nodes with
// skewed clocks share one bucket fairly.
type Redis struct {
	c   rueidis.Client
	cfg RedisConfig
	n   int
	per time.Duration

	// A send asks Kicked then Muted; Kicked reads both keys in one round
	// trip and leaves the mute answer here for the Muted that follows.
	mu    sync.Mutex
	mutes map[string]muteAnswer // room\x00user; guarded by mu
}

type muteAnswer struct {
	muted bool
	at    time.Time
}

// muteAnswerTTL bounds how old a mute answer read along with a kick may be.
const muteAnswerTTL = 100 * time.Millisecond

var _ State = (*Redis)(nil)

// RedisConfig configures a Redis State. Zero values mean the defaults.
type RedisConfig struct {
	Prefix string         // key prefix; default "rc:"
	Call   rediscall.Func // nil: commands run directly
}

// NewRedis returns a State on c allowing n sends per window per user (n ≤ 0:
// unlimited), like NewMemory. It does not own c.
func NewRedis(c rueidis.Client, n int, per time.Duration, cfg RedisConfig) *Redis {
	if cfg.Prefix == "" {
		cfg.Prefix = "rc:"
	}
	return &Redis{c: c, cfg: cfg, n: n, per: per, mutes: map[string]muteAnswer{}}
}

// allowScript: KEYS[1] bucket; ARGV capacity, refill per ms. Returns
// {allowed (0/1), wait ms}.
var allowScript = rueidis.NewLuaScript(`
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local b = redis.call('HMGET', KEYS[1], 'tk', 'ts')
local tk = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
tk = math.min(cap, tk + math.max(0, now - ts) * rate)
local ok, wait = 0, 0
if tk >= 1 then
  tk = tk - 1
  ok = 1
else
  wait = math.ceil((1 - tk) / rate)
end
redis.call('HSET', KEYS[1], 'tk', tostring(tk), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 1000)
return {ok, wait}
`)

// Allow implements State with a token bucket of capacity n refilled at
// n/per, shared by every node.
func (r *Redis) Allow(ctx context.Context, user string) (bool, time.Duration, error) {
	if r.n <= 0 || r.per <= 0 {
		return true, 0, nil
	}
	rate := float64(r.n) / float64(max(r.per.Milliseconds(), 1)) // tokens per ms
	var res []int64
	err := r.cfg.Call.Do(ctx, "mod_allow", 1, func(ctx context.Context) error {
		var err error
		res, err = allowScript.Exec(ctx, r.c, []string{r.cfg.Prefix + "{u:" + user + "}:rl"},
			[]string{strconv.Itoa(r.n), strconv.FormatFloat(rate, 'g', -1, 64)}).AsIntSlice()
		return err
	})
	if err != nil {
		return false, 0, fmt.Errorf("moderation: rate limit: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("moderation: rate limit: bad reply %v", res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}

func (r *Redis) key(kind, room, user string) string {
	return r.cfg.Prefix + "{" + room + "}:" + kind + ":" + user
}

func (r *Redis) set(ctx context.Context, op, key string, until time.Time) error {
	if !until.After(time.Now()) {
		return r.del(ctx, op, key)
	}
	err := r.cfg.Call.Do(ctx, op, 1, func(ctx context.Context) error {
		return r.c.Do(ctx, r.c.B().Set().Key(key).Value("1").Pxat(until).Build()).Error()
	})
	if err != nil {
		return fmt.Errorf("moderation: %s: %w", op, err)
	}
	return nil
}

func (r *Redis) del(ctx context.Context, op, key string) error {
	err := r.cfg.Call.Do(ctx, op, 1, func(ctx context.Context) error {
		return r.c.Do(ctx, r.c.B().Del().Key(key).Build()).Error()
	})
	if err != nil {
		return fmt.Errorf("moderation: %s: %w", op, err)
	}
	return nil
}

func (r *Redis) exists(ctx context.Context, op, key string) (bool, error) {
	var n int64
	err := r.cfg.Call.Do(ctx, op, 1, func(ctx context.Context) error {
		var err error
		n, err = r.c.Do(ctx, r.c.B().Exists().Key(key).Build()).AsInt64()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("moderation: %s: %w", op, err)
	}
	return n > 0, nil
}

// Mute implements State.
func (r *Redis) Mute(ctx context.Context, room, user string, until time.Time) error {
	defer r.forgetMute(room, user)
	return r.set(ctx, "mod_mute", r.key("mute", room, user), until)
}

// Unmute implements State.
func (r *Redis) Unmute(ctx context.Context, room, user string) error {
	defer r.forgetMute(room, user)
	return r.del(ctx, "mod_unmute", r.key("mute", room, user))
}

// forgetMute drops a mute answer read along with a kick: this node's own
// mute or unmute holds from the next Muted on.
func (r *Redis) forgetMute(room, user string) {
	r.mu.Lock()
	delete(r.mutes, key(room, user))
	r.mu.Unlock()
}

// Muted implements State. Right after Kicked for the same room and user it
// answers from what Kicked read, without a round trip.
func (r *Redis) Muted(ctx context.Context, room, user string) (bool, error) {
	k := key(room, user)
	r.mu.Lock()
	a, ok := r.mutes[k]
	delete(r.mutes, k)
	r.mu.Unlock()
	if ok && time.Since(a.at) < muteAnswerTTL {
		return a.muted, nil
	}
	return r.exists(ctx, "mod_muted", r.key("mute", room, user))
}

// Kick implements State.
func (r *Redis) Kick(ctx context.Context, room, user string, until time.Time) error {
	return r.set(ctx, "mod_kick", r.key("kick", room, user), until)
}

// Kicked implements State. It reads the user's mute in the same round trip
// (both keys are in the room's slot) for the Muted call that follows.
func (r *Redis) Kicked(ctx context.Context, room, user string) (bool, error) {
	// One MGET of both keys (one command for Redis, issue 14), not two EXISTS.
	var vals []rueidis.RedisMessage
	err := r.cfg.Call.Do(ctx, "mod_kicked", 1, func(ctx context.Context) error {
		var err error
		vals, err = r.c.Do(ctx, r.c.B().Mget().Key(r.key("kick", room, user), r.key("mute", room, user)).Build()).ToArray()
		if err == nil && len(vals) != 2 {
			err = fmt.Errorf("mget: %d values", len(vals))
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("moderation: mod_kicked: %w", err)
	}
	kicked, muted := 0, 0
	if !vals[0].IsNil() {
		kicked = 1
	}
	if !vals[1].IsNil() {
		muted = 1
	}
	k := key(room, user)
	now := time.Now()
	r.mu.Lock()
	if len(r.mutes) > 10000 { // answers nobody asked for: drop the old ones
		for k2, a := range r.mutes {
			if now.Sub(a.at) >= muteAnswerTTL {
				delete(r.mutes, k2)
			}
		}
	}
	r.mutes[k] = muteAnswer{muted: muted > 0, at: now}
	r.mu.Unlock()
	return kicked > 0, nil
}

// Close implements State. The client belongs to the caller.
func (r *Redis) Close() error { return nil }
