package quiz

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/redis/rueidis"

	"roomcast/internal/rediscall"
)

// Redis is the State of a cluster: each step is one Lua script on the
// activity's keys, which share the hash tag {q:ID} (one Cluster slot), so
// an answer is decided exactly once whichever node receives it.
//
//	PREFIX{q:ID}:m  hash  status, current, revealed, deadline, counts of players and alive; the rules (a:N answer, o:N options)
//	PREFIX{q:ID}:p  hash  user → "alive:cards:used:last"
//	PREFIX{q:ID}:c  hash  "N:opt" → answers for the option, "N:a" answers, "N:ok" answered and still in
//	PREFIX{q:ID}:w  set   winners (in after the last question)
//	PREFIX{q:ID}:r  set   players who used a revival card
//	PREFIX{q:ID}:k  set   steps whose message was sent
type Redis struct {
	c   rueidis.Client
	cfg RedisConfig
}

var _ State = (*Redis)(nil)

// RedisConfig configures the Redis State. Zero values mean the defaults.
type RedisConfig struct {
	Prefix string // key prefix; default "rc:"
	// Call runs each Redis round trip (the node's gate: metrics, fail
	// fast); nil runs it directly.
	Call rediscall.Func
}

// NewRedis returns a Redis State on c. It does not own c.
func NewRedis(c rueidis.Client, cfg RedisConfig) *Redis {
	if cfg.Prefix == "" {
		cfg.Prefix = "rc:"
	}
	return &Redis{c: c, cfg: cfg}
}

func (r *Redis) keys(id string) []string {
	b := r.cfg.Prefix + "{q:" + id + "}:"
	return []string{b + "m", b + "p", b + "c", b + "w", b + "r", b + "k"}
}

// call runs one round trip through the node's gate.
func (r *Redis) call(ctx context.Context, op, id string, do func(context.Context) error) error {
	if err := r.cfg.Call.Do(ctx, op, 1, do); err != nil {
		return fmt.Errorf("quiz: redis %s %s: %w", op, id, err)
	}
	return nil
}

// run executes s on id's keys and returns its array reply.
func (r *Redis) run(ctx context.Context, op string, s *rueidis.Lua, id string, args ...string) ([]rueidis.RedisMessage, error) {
	return r.runOn(ctx, op, s, id, r.keys(id), args...)
}

// runOn executes s on keys (of activity id) and returns its array reply.
func (r *Redis) runOn(ctx context.Context, op string, s *rueidis.Lua, id string, keys []string, args ...string) ([]rueidis.RedisMessage, error) {
	var out []rueidis.RedisMessage
	err := r.call(ctx, op, id, func(ctx context.Context) error {
		var err error
		out, err = s.Exec(ctx, r.c, keys, args).ToArray()
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("quiz: redis %s: empty reply", op)
	}
	code, _ := out[0].ToString()
	switch code {
	case "":
		return out[1:], nil
	case "unknown":
		return nil, ErrUnknown
	}
	return nil, codeErr(code)
}

func ints(ms []rueidis.RedisMessage) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i], _ = m.AsInt64()
	}
	return out
}

// luaLive is shared by the scripts: the live state as a reply tail.
const luaLive = `
local function live()
  local v = redis.call('HMGET', KEYS[1], 'st', 'cur', 'rev', 'pushed', 'dl', 'players', 'alive')
  return {v[1], tonumber(v[2]), tonumber(v[3]), tonumber(v[4]), tonumber(v[5]), tonumber(v[6]), tonumber(v[7])}
end
local function tally(n)
  local o = tonumber(redis.call('HGET', KEYS[1], 'o:' .. n))
  local f = {}
  for i = 0, o - 1 do f[#f + 1] = n .. ':' .. i end
  f[#f + 1] = n .. ':a'
  f[#f + 1] = n .. ':ok'
  local v = redis.call('HMGET', KEYS[3], unpack(f))
  local out = {}
  for i = 1, #v do out[i] = tonumber(v[i]) or 0 end
  return out
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown'} end
`

func parseLive(ms []rueidis.RedisMessage) Live {
	st, _ := ms[0].ToString()
	v := ints(ms[1:7])
	return Live{Status: st, Current: int(v[0]), Revealed: int(v[1]), PushedAt: v[2], Deadline: v[3], Players: v[4], Alive: v[5]}
}

// parseTally reads tally()'s reply: counts…, answers, ok.
func parseTally(ms []rueidis.RedisMessage, players int64) Reveal {
	v := ints(ms)
	k := len(v) - 2
	r := Reveal{Counts: v[:k], Answers: v[k], Alive: v[k+1]}
	r.Eliminated = players - r.Alive
	return r
}

var initScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {''} end
redis.call('HSET', KEYS[1], unpack(ARGV))
return {''}`)

// Init implements State.
func (r *Redis) Init(ctx context.Context, ru Rules) error {
	args := []string{"st", StatusScheduled, "cur", "0", "rev", "0", "pushed", "0", "dl", "0", "players", "0", "alive", "0",
		"count", strconv.Itoa(ru.Count), "ams", strconv.FormatInt(ru.AnswerMS, 10), "dms", strconv.FormatInt(ru.DelayMS, 10),
		"rv", strconv.Itoa(ru.Revivals)}
	for i := range ru.Count {
		n := strconv.Itoa(i + 1)
		args = append(args, "a:"+n, strconv.Itoa(ru.Answers[i]), "o:"+n, strconv.Itoa(ru.Options[i]))
	}
	_, err := r.run(ctx, "quiz_init", initScript, ru.ID, args...)
	return err
}

var liveScript = rueidis.NewLuaScript(luaLive + `
local l = live()
return {'', l[1], l[2], l[3], l[4], l[5], l[6], l[7]}`)

// Live implements State.
func (r *Redis) Live(ctx context.Context, id string) (Live, error) {
	out, err := r.run(ctx, "quiz_live", liveScript, id)
	if err != nil {
		return Live{}, err
	}
	return parseLive(out), nil
}

var startScript = rueidis.NewLuaScript(luaLive + `
local changed = 0
if redis.call('HGET', KEYS[1], 'st') == 'scheduled' then
  redis.call('HSET', KEYS[1], 'st', 'running')
  changed = 1
end
local l = live()
return {'', l[1], l[2], l[3], l[4], l[5], l[6], l[7], changed}`)

// Start implements State.
func (r *Redis) Start(ctx context.Context, id string) (Live, bool, error) {
	out, err := r.run(ctx, "quiz_start", startScript, id)
	if err != nil {
		return Live{}, false, err
	}
	c, _ := out[7].AsInt64()
	return parseLive(out), c == 1, nil
}

// pushScript mirrors pushCheck.
var pushScript = rueidis.NewLuaScript(luaLive + `
local n, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local l = live()
local count = tonumber(redis.call('HGET', KEYS[1], 'count'))
if l[1] ~= 'running' and not (l[2] >= n and n >= 1) then return {'not_running'} end
if n < 1 or n > count then return {'out_of_order'} end
local changed = 0
if l[2] < n then
  if n ~= l[2] + 1 or l[3] ~= l[2] then return {'out_of_order'} end
  local d = redis.call('HMGET', KEYS[1], 'ams', 'dms')
  redis.call('HSET', KEYS[1], 'cur', n, 'pushed', now, 'dl', now + tonumber(d[1]) + tonumber(d[2]))
  changed = 1
  l = live()
end
return {'', l[1], l[2], l[3], l[4], l[5], l[6], l[7], changed}`)

// Push implements State.
func (r *Redis) Push(ctx context.Context, id string, n int, now int64) (Live, bool, error) {
	out, err := r.run(ctx, "quiz_push", pushScript, id, strconv.Itoa(n), strconv.FormatInt(now, 10))
	if err != nil {
		return Live{}, false, err
	}
	c, _ := out[7].AsInt64()
	return parseLive(out), c == 1, nil
}

var enrollScript = rueidis.NewLuaScript(luaLive + `
local l = live()
if l[1] ~= 'running' or l[3] > 0 then return {'not_running'} end
local added = 0
for i = 1, #ARGV, 2 do
  added = added + redis.call('HSETNX', KEYS[2], ARGV[i], '1:' .. ARGV[i + 1] .. ':0:0')
end
if added > 0 then
  redis.call('HINCRBY', KEYS[1], 'players', added)
  redis.call('HINCRBY', KEYS[1], 'alive', added)
end
return {'', added}`)

// Enroll implements State.
func (r *Redis) Enroll(ctx context.Context, id string, ps []Player) (int, error) {
	added := 0
	for len(ps) > 0 { // bounded scripts: 1,000 players each
		k := min(len(ps), 1000)
		args := make([]string, 0, 2*k)
		for _, p := range ps[:k] {
			if p.User != "" {
				args = append(args, p.User, strconv.Itoa(max(0, p.Cards)))
			}
		}
		ps = ps[k:]
		if len(args) == 0 {
			continue
		}
		out, err := r.run(ctx, "quiz_enroll", enrollScript, id, args...)
		if err != nil {
			return added, err
		}
		n, _ := out[0].AsInt64()
		added += int(n)
	}
	return added, nil
}

// answerScript mirrors Memory.Answer check for check.
var answerScript = rueidis.NewLuaScript(`
local m = redis.call('HMGET', KEYS[1], 'st', 'cur', 'rev', 'dl', 'rv', 'count')
if not m[1] then return {'unknown'} end
if m[1] ~= 'running' then return {'not_running'} end
local cur, rev, dl, rv, count = tonumber(m[2]), tonumber(m[3]), tonumber(m[4]), tonumber(m[5]), tonumber(m[6])
local user, n, opt, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ps = redis.call('HGET', KEYS[2], user)
if not ps and ARGV[5] == '1' and cur == 1 and rev == 0 then
  ps = '1:' .. ARGV[6] .. ':0:0'
  redis.call('HSET', KEYS[2], user, ps)
  redis.call('HINCRBY', KEYS[1], 'players', 1)
  redis.call('HINCRBY', KEYS[1], 'alive', 1)
end
if not ps then return {'not_a_player'} end
local a, c, u, last = string.match(ps, '(%d+):(%d+):(%d+):(%d+)')
a, c, u, last = tonumber(a), tonumber(c), tonumber(u), tonumber(last)
if a == 0 then return {'eliminated'} end
if n ~= cur or rev >= n then return {'not_current'} end
if last < n - 1 then return {'out_of_sequence'} end
if now > dl then return {'too_late'} end
if last >= n then return {'already_answered'} end
local o = redis.call('HMGET', KEYS[1], 'o:' .. n, 'a:' .. n)
if opt < 0 or opt >= tonumber(o[1]) then return {'invalid'} end
redis.call('HINCRBY', KEYS[3], n .. ':' .. opt, 1)
redis.call('HINCRBY', KEYS[3], n .. ':a', 1)
local correct, revived = 0, 0
if opt == tonumber(o[2]) then correct = 1
elseif c - u > 0 and u < rv then
  u = u + 1
  revived = 1
  redis.call('SADD', KEYS[5], user)
else a = 0 end
if a == 1 then
  redis.call('HINCRBY', KEYS[3], n .. ':ok', 1)
  if n == count then redis.call('SADD', KEYS[4], user) end
end
redis.call('HSET', KEYS[2], user, a .. ':' .. c .. ':' .. u .. ':' .. n)
return {'', correct, revived, a, c - u}`)

// Answer implements State.
func (r *Redis) Answer(ctx context.Context, id string, in Answer) (Result, error) {
	enroll, cards := "0", "0"
	if in.Enroll != nil {
		enroll, cards = "1", strconv.Itoa(max(0, in.Enroll.Cards))
	}
	out, err := r.run(ctx, "quiz_answer", answerScript, id, in.User, strconv.Itoa(in.N), strconv.Itoa(in.Option),
		strconv.FormatInt(in.Now, 10), enroll, cards)
	if err != nil {
		return Result{}, err
	}
	v := ints(out)
	return Result{N: in.N, Correct: v[0] == 1, Revived: v[1] == 1, Alive: v[2] == 1, CardsLeft: int(v[3])}, nil
}

var countsScript = rueidis.NewLuaScript(luaLive + `
local n = tonumber(ARGV[1])
if n < 1 or n > tonumber(redis.call('HGET', KEYS[1], 'count')) then return {'not_current'} end
local out = tally(n)
table.insert(out, 1, '')
table.insert(out, 2, tonumber(redis.call('HGET', KEYS[1], 'players')))
return out`)

// Counts implements State.
func (r *Redis) Counts(ctx context.Context, id string, n int) (Reveal, error) {
	out, err := r.run(ctx, "quiz_counts", countsScript, id, strconv.Itoa(n))
	if err != nil {
		return Reveal{}, err
	}
	players, _ := out[0].AsInt64()
	return parseTally(out[1:], players), nil
}

// revealScript mirrors revealCheck.
var revealScript = rueidis.NewLuaScript(luaLive + `
local n, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local l = live()
local changed = 0
if not (n >= 1 and l[3] >= n) then
  if l[1] ~= 'running' then return {'not_running'} end
  if n ~= l[2] or n < 1 then return {'out_of_order'} end
  if now < l[5] then return {'too_early'} end
  local t = tally(n)
  redis.call('HSET', KEYS[1], 'rev', n, 'alive', t[#t])
  if n == tonumber(redis.call('HGET', KEYS[1], 'count')) then redis.call('HSET', KEYS[1], 'st', 'ended') end
  changed = 1
  l = live()
end
local out = {'', l[1], l[2], l[3], l[4], l[5], l[6], l[7], changed}
for _, v in ipairs(tally(n)) do out[#out + 1] = v end
return out`)

// Reveal implements State.
func (r *Redis) Reveal(ctx context.Context, id string, n int, now int64) (Reveal, Live, bool, error) {
	out, err := r.run(ctx, "quiz_reveal", revealScript, id, strconv.Itoa(n), strconv.FormatInt(now, 10))
	if err != nil {
		return Reveal{}, Live{}, false, err
	}
	l := parseLive(out)
	c, _ := out[7].AsInt64()
	return parseTally(out[8:], l.Players), l, c == 1, nil
}

func (r *Redis) members(ctx context.Context, id, op string, key int) ([]string, error) {
	var out []string
	err := r.call(ctx, op, id, func(ctx context.Context) error {
		var err error
		out, err = r.c.Do(ctx, r.c.B().Smembers().Key(r.keys(id)[key]).Build()).AsStrSlice()
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

// Winners implements State.
func (r *Redis) Winners(ctx context.Context, id string) ([]string, error) {
	return r.members(ctx, id, "quiz_winners", 3)
}

// Revived implements State.
func (r *Redis) Revived(ctx context.Context, id string) ([]string, error) {
	return r.members(ctx, id, "quiz_revived", 4)
}

// settleScript ends the activity's life in Redis: the keys expire a day
// after settlement (SQL holds the results).
var settleScript = rueidis.NewLuaScript(luaLive + `
local st = redis.call('HGET', KEYS[1], 'st')
if st == 'settled' then return {'', 0} end
if st ~= 'ended' then return {'not_ended'} end
redis.call('HSET', KEYS[1], 'st', 'settled')
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], 86400000) end
return {'', 1}`)

// Settle implements State.
func (r *Redis) Settle(ctx context.Context, id string) (bool, error) {
	out, err := r.run(ctx, "quiz_settle", settleScript, id)
	if err != nil {
		return false, err
	}
	c, _ := out[0].AsInt64()
	return c == 1, nil
}

var markScript = rueidis.NewLuaScript(luaLive + `
if ARGV[2] == '1' then return {'', redis.call('SADD', KEYS[6], ARGV[1])} end
return {'', redis.call('SREM', KEYS[6], ARGV[1])}`)

// Mark implements State.
func (r *Redis) Mark(ctx context.Context, id, step string) (bool, error) {
	out, err := r.run(ctx, "quiz_mark", markScript, id, step, "1")
	if err != nil {
		return false, err
	}
	c, _ := out[0].AsInt64()
	return c == 1, nil
}

// Unmark implements State.
func (r *Redis) Unmark(ctx context.Context, id, step string) error {
	_, err := r.run(ctx, "quiz_mark", markScript, id, step, "0")
	return err
}

// Close implements State (the client belongs to the caller).
func (r *Redis) Close() error { return nil }
