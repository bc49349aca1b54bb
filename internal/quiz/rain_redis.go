package quiz

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// A rain's keys share the activity's hash tag {q:ID}:
//
//	PREFIX{q:ID}:rain:K:m  hash    ends, max, n (packets), next, paid, grabs, closed (to grabs), settled (in SQL)
//	PREFIX{q:ID}:rain:K:a  string  the amounts, 13 decimal digits each (GETRANGE by packet)
//	PREFIX{q:ID}:rain:K:u  hash    user → packets won
//	PREFIX{q:ID}:rain:K:w  list    "packet amount at user" per packet paid
//
// They expire 7 days after the rain is settled (SQL holds the packets).
func (r *Redis) rainKeys(id string, k int) []string {
	b := r.cfg.Prefix + "{q:" + id + "}:rain:" + strconv.Itoa(k) + ":"
	return []string{b + "m", b + "a", b + "u", b + "w"}
}

const amountWidth = 13 // digits per amount: budgets are below 2^40 cents

const luaRainLive = `
local function rlive()
  local v = redis.call('HMGET', KEYS[1], 'ends', 'n', 'next', 'paid', 'grabs', 'settled')
  return {tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4]), tonumber(v[5]), tonumber(v[6] or '0'), redis.call('HLEN', KEYS[3])}
end
`

func parseRainLive(ms []rueidis.RedisMessage) RainLive {
	v := ints(ms)
	return RainLive{Started: true, EndsAt: v[0], Packets: int(v[1]), Left: int(v[1] - v[2]), PaidCents: v[3], Grabs: v[4],
		Settled: v[5] == 1, Winners: v[6]}
}

var rainStartScript = rueidis.NewLuaScript(luaRainLive + `
local changed = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[4])
  redis.call('HSET', KEYS[1], 'ends', ARGV[1], 'max', ARGV[2], 'n', ARGV[3], 'next', 0, 'paid', 0, 'grabs', 0)
  changed = 1
end
local l = rlive()
return {'', l[1], l[2], l[3], l[4], l[5], l[6], l[7], changed}`)

// RainStart implements State.
func (r *Redis) RainStart(ctx context.Context, ru RainRules) (RainLive, bool, error) {
	var b strings.Builder
	b.Grow(len(ru.Amounts) * amountWidth)
	for _, a := range ru.Amounts {
		fmt.Fprintf(&b, "%0*d", amountWidth, a)
	}
	out, err := r.runOn(ctx, "rain_start", rainStartScript, ru.ID, r.rainKeys(ru.ID, ru.K), strconv.FormatInt(ru.EndsAt, 10),
		strconv.Itoa(ru.MaxPerUser), strconv.Itoa(len(ru.Amounts)), b.String())
	if err != nil {
		return RainLive{}, false, err
	}
	c, _ := out[7].AsInt64()
	return parseRainLive(out[:7]), c == 1, nil
}

// grabScript mirrors Memory.Grab check for check: ARGV[3] taps, one
// chance each, in one call.
var grabScript = rueidis.NewLuaScript(`
local m = redis.call('HMGET', KEYS[1], 'ends', 'max', 'n', 'next', 'closed')
if not m[1] then return {'unknown'} end
local taps = tonumber(ARGV[3])
redis.call('HINCRBY', KEYS[1], 'grabs', taps)
local ends, max, n, nx = tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
local user, now = ARGV[1], tonumber(ARGV[2])
if now > ends or m[5] then return {'', 0, 'ended', -1, 0} end
local have = tonumber(redis.call('HGET', KEYS[3], user) or '0')
local first, sum, won, reason = nx, 0, 0, ''
for i = 1, taps do
  if nx >= n then reason = 'empty' break end
  if have >= max then reason = 'limit' break end
  local amt = tonumber(redis.call('GETRANGE', KEYS[2], nx * 13, nx * 13 + 12))
  redis.call('RPUSH', KEYS[4], nx .. ' ' .. amt .. ' ' .. ARGV[2] .. ' ' .. user)
  sum, won, nx, have = sum + amt, won + 1, nx + 1, have + 1
end
if won == 0 then return {'', 0, reason, -1, 0} end
redis.call('HSET', KEYS[1], 'next', nx)
redis.call('HINCRBY', KEYS[1], 'paid', sum)
redis.call('HINCRBY', KEYS[3], user, won)
return {'', sum, '', first, won}`)

// Grab implements State.
func (r *Redis) Grab(ctx context.Context, id string, k int, user string, now int64, taps int) (GrabResult, error) {
	out, err := r.runOn(ctx, "rain_grab", grabScript, id, r.rainKeys(id, k), user, strconv.FormatInt(now, 10), strconv.Itoa(taps))
	if err != nil {
		return GrabResult{}, err
	}
	amt, _ := out[0].AsInt64()
	reason, _ := out[1].ToString()
	n, _ := out[2].AsInt64()
	won, _ := out[3].AsInt64()
	return GrabResult{AmountCents: amt, Reason: reason, Packet: int(n), Packets: int(won)}, nil
}

var rainLiveScript = rueidis.NewLuaScript(luaRainLive + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown'} end
local l = rlive()
return {'', l[1], l[2], l[3], l[4], l[5], l[6], l[7]}`)

// Rain implements State.
func (r *Redis) Rain(ctx context.Context, id string, k int) (RainLive, error) {
	out, err := r.runOn(ctx, "rain_live", rainLiveScript, id, r.rainKeys(id, k))
	if err == ErrUnknown {
		return RainLive{}, nil
	}
	if err != nil {
		return RainLive{}, err
	}
	return parseRainLive(out), nil
}

var rainCloseScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {''} end
redis.call('HSET', KEYS[1], 'closed', 1)
local out = redis.call('LRANGE', KEYS[4], 0, -1)
table.insert(out, 1, '')
return out`)

// RainClose implements State.
func (r *Redis) RainClose(ctx context.Context, id string, k int) ([]Packet, error) {
	rows, err := r.runOn(ctx, "rain_close", rainCloseScript, id, r.rainKeys(id, k))
	if err != nil {
		return nil, err
	}
	out := make([]Packet, 0, len(rows))
	for _, m := range rows {
		row, _ := m.ToString()
		f := strings.SplitN(row, " ", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("quiz: rain %s/%d: bad packet record %q", id, k, row)
		}
		n, _ := strconv.Atoi(f[0])
		amt, _ := strconv.ParseInt(f[1], 10, 64)
		at, _ := strconv.ParseInt(f[2], 10, 64)
		out = append(out, Packet{N: n, AmountCents: amt, At: at, User: f[3]})
	}
	return out, nil
}

var rainSettledScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {''} end
redis.call('HSET', KEYS[1], 'settled', 1)
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], 604800000) end
return {''}`)

// RainSettled implements State.
func (r *Redis) RainSettled(ctx context.Context, id string, k int) error {
	_, err := r.runOn(ctx, "rain_settled", rainSettledScript, id, r.rainKeys(id, k))
	return err
}
