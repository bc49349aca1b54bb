package moderation

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/bus"
	"roomcast/internal/rediscall"
)

// Redis is the State of a cluster (issue 5): rate limits, mutes and kicks
// hold on every node.
//
//	PREFIX{u:user}:rl   hash tk (tokens), ts (ms): the user's token bucket
//	PREFIX{room}:mod    hash v (the room's moderation version), m:user and
//	                    k:user (until, Unix ms): the room's mutes and kicks
//
// The rate limit is per node by default (a Limiter: no Redis command per
// send, issue 14); with RedisConfig.SharedRate it is one token bucket per
// user in Redis, one Lua script using Redis's clock, so nodes with skewed
// clocks share one bucket fairly.
//
// Mutes and kicks are read from a per-node copy of each room's hash (issue
// 14: a send costs no Redis command for them): loaded with one HGETALL when
// the node first checks the room, moved at once by this node's own changes
// and, within the bus's latency, by other nodes' (each change publishes an
// EvChange on bus.Control with the versions it moved the room from and
// to). A change that does not follow the copy, a bus resync (its
// subscription was re-established, or Redis answers again after an
// outage), MaxAge or Idle drop the copy; the next check reloads it. Ends
// are compared with the node's clock, so a mute ends by time without an
// event.
type Redis struct {
	c     rueidis.Client
	cfg   RedisConfig
	n     int
	per   time.Duration
	rooms *roomCache
	local *Limiter // nil with SharedRate
	unsub func()
}

// EvChange is the control event a node publishes after changing a room's
// mutes or kicks: Room, User, Until (Unix ms; 0 lifts) and Data "KIND PREV
// VER" (KIND m or k).
const EvChange bus.EventType = "moderation"

var _ State = (*Redis)(nil)

// RedisConfig configures a Redis State. Zero values mean the defaults.
type RedisConfig struct {
	Prefix string         // key prefix; default "rc:"
	Call   rediscall.Func // nil: commands run directly
	// Bus carries the changes between nodes (bus.Control); required.
	Bus   bus.Bus
	Cache CacheConfig
	// SharedRate keeps each user's rate limit in Redis, one bucket for every
	// node (`--rate-limit-scope cluster`): exact, but one Lua call (about
	// five commands) per send. False (the default, `node`): each node limits
	// the users who send through it, with no Redis command; a user sending
	// through k nodes at once gets at most k times the rate.
	SharedRate bool
}

// NewRedis returns a State on c allowing n sends per window per user (n ≤ 0:
// unlimited), like NewMemory. It subscribes to cfg.Bus's control topic
// until Close. It does not own c or the bus.
func NewRedis(c rueidis.Client, n int, per time.Duration, cfg RedisConfig) (*Redis, error) {
	if cfg.Bus == nil {
		return nil, errors.New("moderation: RedisConfig.Bus is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "rc:"
	}
	r := &Redis{c: c, cfg: cfg, n: n, per: per}
	if !cfg.SharedRate {
		r.local = NewLimiter(n, per)
	}
	r.rooms = newRoomCache(cfg.Cache, r.loadRoom)
	unsub, err := cfg.Bus.Subscribe(bus.Control, r.onControl)
	if err != nil {
		return nil, fmt.Errorf("moderation: subscribe: %w", err)
	}
	r.unsub = unsub
	return r, nil
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
// n/per: this node's (no command), or with SharedRate one shared by every
// node.
func (r *Redis) Allow(ctx context.Context, user string) (bool, time.Duration, error) {
	if r.n <= 0 || r.per <= 0 {
		return true, 0, nil
	}
	if r.local != nil {
		ok, wait := r.local.Allow(user)
		return ok, wait, nil
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

func (r *Redis) roomKey(room string) string { return r.cfg.Prefix + "{" + room + "}:mod" }

// changeScript: KEYS[1] the room's hash; ARGV[1] field (m:user or k:user),
// ARGV[2] until (Unix ms; not after Redis's now: lift). It bumps the room's
// version past both the old one and Redis's clock in ms, so a version is
// never reused after the hash expired; drops what has ended; and keeps the
// hash a minute past its last end. Returns {prev, ver, until stored (0:
// lifted)}.
var changeScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local ver = math.max(prev + 1, now)
local untilms = tonumber(ARGV[2])
if untilms > now then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  untilms = 0
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('HSET', KEYS[1], 'v', string.format('%d', ver))
local last = now
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= 'v' then
    local u = tonumber(all[i + 1]) or 0
    if u <= now then
      redis.call('HDEL', KEYS[1], all[i])
    elseif u > last then
      last = u
    end
  end
end
redis.call('PEXPIREAT', KEYS[1], string.format('%d', last + 60000))
return {prev, ver, untilms}
`)

// change records a mute or kick (kind) of user in room until the given
// time (not after now: lifts it), applies it to this node's copy at once
// and publishes it to the other nodes.
func (r *Redis) change(ctx context.Context, op string, kind byte, room, user string, until time.Time) error {
	ms := until.UnixMilli()
	if !until.After(time.Now()) {
		ms = 0
	}
	var res []int64
	err := r.cfg.Call.Do(ctx, op, 1, func(ctx context.Context) error {
		var err error
		res, err = changeScript.Exec(ctx, r.c, []string{r.roomKey(room)},
			[]string{string(kind) + ":" + user, strconv.FormatInt(ms, 10)}).AsIntSlice()
		if err == nil && len(res) != 3 {
			err = fmt.Errorf("bad reply %v", res)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("moderation: %s: %w", op, err)
	}
	ch := change{kind: kind, user: user, until: res[2], prev: res[0], ver: res[1]}
	r.rooms.apply(room, ch)
	data := fmt.Sprintf("%c %d %d", kind, ch.prev, ch.ver)
	ev := bus.Event{Type: EvChange, Room: room, User: user, Until: ch.until, Data: []byte(data)}
	if err := r.cfg.Bus.Publish(ctx, bus.Control, ev); err != nil {
		return fmt.Errorf("moderation: %s: %w", op, err)
	}
	return nil
}

// onControl moves this node's copies by other nodes' changes and forgets
// them all when the bus may have lost some.
func (r *Redis) onControl(ev bus.Event) {
	switch ev.Type {
	case bus.EvResync:
		r.rooms.reset()
	case EvChange:
		var kind byte
		var ch change
		if _, err := fmt.Sscanf(string(ev.Data), "%c %d %d", &kind, &ch.prev, &ch.ver); err != nil ||
			(kind != kindMute && kind != kindKick) {
			r.rooms.reset() // a change this node cannot read: trust no copy
			return
		}
		ch.kind, ch.user, ch.until = kind, ev.User, ev.Until
		r.rooms.apply(ev.Room, ch)
	}
}

// loadRoom reads room's hash: one HGETALL.
func (r *Redis) loadRoom(ctx context.Context, room string) (*roomState, error) {
	var h map[string]string
	err := r.cfg.Call.Do(ctx, "mod_load", 1, func(ctx context.Context) error {
		var err error
		h, err = r.c.Do(ctx, r.c.B().Hgetall().Key(r.roomKey(room)).Build()).AsStrMap()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("moderation: load %s: %w", room, err)
	}
	st := newRoomState()
	for f, v := range h {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("moderation: load %s: field %s: %w", room, f, err)
		}
		switch {
		case f == "v":
			st.ver = n
		case len(f) > 2 && f[1] == ':' && (f[0] == kindMute || f[0] == kindKick):
			st.table(f[0])[f[2:]] = n
		}
	}
	return st, nil
}

// Mute implements State.
func (r *Redis) Mute(ctx context.Context, room, user string, until time.Time) error {
	return r.change(ctx, "mod_mute", kindMute, room, user, until)
}

// Unmute implements State.
func (r *Redis) Unmute(ctx context.Context, room, user string) error {
	return r.change(ctx, "mod_unmute", kindMute, room, user, time.Time{})
}

// Muted implements State from this node's copy of the room.
func (r *Redis) Muted(ctx context.Context, room, user string) (bool, error) {
	return r.rooms.active(ctx, room, kindMute, user)
}

// Kick implements State; an until not after now lifts the kick.
func (r *Redis) Kick(ctx context.Context, room, user string, until time.Time) error {
	return r.change(ctx, "mod_kick", kindKick, room, user, until)
}

// Kicked implements State from this node's copy of the room.
func (r *Redis) Kicked(ctx context.Context, room, user string) (bool, error) {
	return r.rooms.active(ctx, room, kindKick, user)
}

// Close implements State: it leaves the control topic. The client and the
// bus belong to the caller.
func (r *Redis) Close() error {
	r.unsub()
	return nil
}
