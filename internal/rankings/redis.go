package rankings

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/rediscall"
)

// Redis is the cluster Board. A room's keys share the hash tag {rk:ROOM}:
//
//	PREFIX{rk:ROOM}:v:P  sorted set  user → value cents, P = all, d:YYYYMMDD, s:SID
//	PREFIX{rk:ROOM}:g:P  hash        user → gift items
//	PREFIX{rk:ROOM}:n    hash        user → display name
//	PREFIX{rk:ROOM}:s    string      the room's current (last) session
//
// Day boards expire after two days, session boards after seven.
type Redis struct {
	c      rueidis.Client
	prefix string
	call   rediscall.Func
}

var _ Board = (*Redis)(nil)

// NewRedis returns a Redis Board on c (not owned); prefix "" is "rc:".
func NewRedis(c rueidis.Client, prefix string, call rediscall.Func) *Redis {
	if prefix == "" {
		prefix = "rc:"
	}
	return &Redis{c: c, prefix: prefix, call: call}
}

func (r *Redis) base(room string) string { return r.prefix + "{rk:" + room + "}:" }

// addScript counts one gift on every period's board at once.
// KEYS: names, session pointer, then (value, gifts) per board.
// ARGV: user, name, value, count, session, then a TTL (ms, 0: none) per board.
var addScript = rueidis.NewLuaScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5]) end
local b = 0
for i = 3, #KEYS, 2 do
  b = b + 1
  redis.call('ZINCRBY', KEYS[i], ARGV[3], ARGV[1])
  redis.call('HINCRBY', KEYS[i + 1], ARGV[1], ARGV[4])
  local ttl = tonumber(ARGV[5 + b])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.call('PEXPIRE', KEYS[i + 1], ttl)
  end
end
return 1`)

// Add implements Board.
func (r *Redis) Add(ctx context.Context, g Gift) error {
	b := r.base(g.Room)
	keys := []string{b + "n", b + "s", b + "v:all", b + "g:all", b + "v:d:" + dayOf(g.At), b + "g:d:" + dayOf(g.At)}
	args := []string{g.User, g.Name, strconv.FormatInt(g.ValueCents, 10), strconv.FormatInt(g.Count, 10), g.Session, "0", "172800000"}
	if g.Session != "" {
		keys = append(keys, b+"v:s:"+g.Session, b+"g:s:"+g.Session)
		args = append(args, "604800000")
	}
	return r.do(ctx, "rankings_add", func(ctx context.Context) error {
		return addScript.Exec(ctx, r.c, keys, args).Error()
	})
}

func (r *Redis) do(ctx context.Context, op string, fn func(context.Context) error) error {
	if err := r.call.Do(ctx, op, 1, fn); err != nil {
		return fmt.Errorf("rankings: redis %s: %w", op, err)
	}
	return nil
}

// topScript reads a board: the top members with scores, their gift counts
// and names. KEYS: values, gifts, names, session pointer; ARGV: limit,
// period ("session" reads the pointer to find the board).
var topScript = rueidis.NewLuaScript(`
local vk, gk = KEYS[1], KEYS[2]
if ARGV[2] == 'session' then
  local s = redis.call('GET', KEYS[4])
  if not s then return {} end
  vk, gk = vk .. s, gk .. s
end
local top = redis.call('ZREVRANGE', vk, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #top, 2 do
  local u = top[i]
  out[#out + 1] = u
  out[#out + 1] = top[i + 1]
  out[#out + 1] = redis.call('HGET', gk, u) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[3], u) or ''
end
return out`)

// Top implements Board.
func (r *Redis) Top(ctx context.Context, room, period string, limit int, now time.Time) ([]Entry, error) {
	b := r.base(room)
	p := "all"
	switch period {
	case Day:
		p = "d:" + dayOf(now)
	case Session:
		p = "s:"
	}
	var rows []string
	err := r.do(ctx, "rankings_top", func(ctx context.Context) error {
		var err error
		rows, err = topScript.Exec(ctx, r.c, []string{b + "v:" + p, b + "g:" + p, b + "n", b + "s"},
			[]string{strconv.Itoa(limit), period}).AsStrSlice()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(rows)/4)
	for i := 0; i+3 < len(rows); i += 4 {
		v, _ := strconv.ParseFloat(rows[i+1], 64)
		n, _ := strconv.ParseInt(rows[i+2], 10, 64)
		out = append(out, Entry{User: rows[i], ValueCents: int64(v), Gifts: n, Name: rows[i+3]})
	}
	return out, nil
}
