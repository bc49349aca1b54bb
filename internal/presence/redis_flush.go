package presence

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// liveLua computes the room's total over live nodes, dropping the dead ones
// (KEYS[1] counts, KEYS[2] heartbeats, optional KEYS[3] audiences; ttl and
// now in ms). It is shared by the scripts below.
const liveLua = `
local function live_total(kc, kh, ka, ttl, now)
  for _, n in ipairs(redis.call('ZRANGEBYSCORE', kh, '-inf', now - ttl)) do
    redis.call('HDEL', kc, n)
    redis.call('ZREM', kh, n)
    if ka then redis.call('HDEL', ka, n) end
  end
  local total = 0
  for _, v in ipairs(redis.call('HVALS', kc)) do total = total + tonumber(v) end
  return total
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// flushScript writes one node's presence in one room. KEYS: counts,
// heartbeats, audiences, watch zset, names, stats. ARGV: node, count,
// audience JSON ("" = unchanged), node ttl, key ttl, max watchers, then a
// watch batch: its id and (user, name, seconds) triples. A batch is added
// once: the stats hash keeps the node's last applied batch id ("b:" node),
// so a batch sent again after a round trip that timed out is skipped.
// Returns {total, had} where had tells whether the node's entry was still
// there.
var flushScript = newScript(liveLua + `
local node, cnt = ARGV[1], tonumber(ARGV[2])
local had = redis.call('HEXISTS', KEYS[1], node)
if cnt > 0 then
  redis.call('HSET', KEYS[1], node, cnt)
  redis.call('ZADD', KEYS[2], now, node)
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], node, ARGV[3]) end
else
  redis.call('HDEL', KEYS[1], node)
  redis.call('ZREM', KEYS[2], node)
  redis.call('HDEL', KEYS[3], node)
end
local total = live_total(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[4]), now)
if total > tonumber(redis.call('HGET', KEYS[6], 'peak') or '0') then redis.call('HSET', KEYS[6], 'peak', total) end
if #ARGV >= 8 and redis.call('HGET', KEYS[6], 'b:' .. node) ~= ARGV[7] then
  redis.call('HSET', KEYS[6], 'b:' .. node, ARGV[7])
  local added = 0
  for i = 8, #ARGV, 3 do
    redis.call('ZINCRBY', KEYS[4], ARGV[i + 2], ARGV[i])
    redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
    added = added + tonumber(ARGV[i + 2])
  end
  local extra = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[6])
  if extra > 0 then
    local gone = redis.call('ZRANGE', KEYS[4], 0, extra - 1, 'WITHSCORES')
    for i = 1, #gone, 2 do
      redis.call('HDEL', KEYS[5], gone[i])
      added = added - tonumber(gone[i + 1])
    end
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, extra - 1)
  end
  redis.call('HINCRBY', KEYS[6], 'secs', added)
end
for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return {total, had}
`)

// countScript: KEYS counts, heartbeats; ARGV node ttl. Returns the total.
var countScript = rueidis.NewLuaScript(liveLua + `
return live_total(KEYS[1], KEYS[2], nil, tonumber(ARGV[1]), now)
`)

// audienceScript: KEYS heartbeats, audiences; ARGV node ttl. Returns the
// audience JSON of every live node.
var audienceScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(live))
`)

// statsScript: KEYS counts, heartbeats, watch zset, names, stats; ARGV node
// ttl. Returns {online, peak, viewers, secs, (user, seconds, name)...}.
var statsScript = rueidis.NewLuaScript(liveLua + `
local out = {live_total(KEYS[1], KEYS[2], nil, tonumber(ARGV[1]), now),
  tonumber(redis.call('HGET', KEYS[5], 'peak') or '0'), redis.call('ZCARD', KEYS[3]),
  tonumber(redis.call('HGET', KEYS[5], 'secs') or '0')}
local top = redis.call('ZREVRANGE', KEYS[3], 0, 19, 'WITHSCORES')
for i = 1, #top, 2 do
  out[#out + 1] = top[i]
  out[#out + 1] = top[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[4], top[i]) or ''
end
return out
`)

// script is a Lua script run in batches: EVALSHA in one pipelined DoMulti,
// falling back to EVAL for the ones Redis has not cached yet.
type script struct {
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

type scriptCall struct{ keys, args []string }

func (s *script) execMulti(ctx context.Context, c rueidis.Client, calls []scriptCall) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(calls))
	for i, x := range calls {
		cmds[i] = c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(x.keys))).Key(x.keys...).Arg(x.args...).Build()
	}
	res := c.DoMulti(ctx, cmds...)
	for i, r := range res {
		if e, ok := rueidis.IsRedisErr(r.Error()); ok && e.IsNoScript() {
			x := calls[i]
			res[i] = c.Do(ctx, c.B().Eval().Script(s.src).Numkeys(int64(len(x.keys))).Key(x.keys...).Arg(x.args...).Build())
		}
	}
	return res
}

// maxWatchers bounds the per-room watch table in Redis as in memory.
var maxWatchersArg = strconv.Itoa(maxWatchers)

// flushBatch is how many rooms go in one pipelined round trip.
const flushBatch = 256

// flushTick is one flush of the flusher, bounded by the flush interval.
func (p *Redis) flushTick() {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Flush)
	defer cancel()
	if err := p.flush(ctx); err != nil {
		p.cfg.Log.Debug("presence: flush", "err", err)
	}
}

// flushItem is one room's write, prepared under the lock.
type flushItem struct {
	room     string
	count    int
	audience bool        // the audience was sent
	batch    *watchBatch // the watch time sent, if any
	call     scriptCall
}

// flush expires silent pollers and writes every room this node holds or
// held (one script per room, pipelined), then records the totals.
func (p *Redis) flush(ctx context.Context) error {
	items := p.prepareFlush()
	var errs []error
	for len(items) > 0 {
		batch := items[:min(len(items), flushBatch)]
		items = items[len(batch):]
		calls := make([]scriptCall, len(batch))
		for i, it := range batch {
			calls[i] = it.call
		}
		var res []rueidis.RedisResult
		err := p.cfg.Call.Do(ctx, "presence_flush", len(calls), func(ctx context.Context) error {
			res = flushScript.execMulti(ctx, p.c, calls)
			for _, r := range res {
				if err := r.Error(); err != nil {
					return err
				}
			}
			return nil
		})
		p.flushed(batch, res)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("presence: flush: %w", err)
	}
	return nil
}

// prepareFlush expires silent pollers and builds the write of every room
// this node holds or held, with its watch batch: the unconfirmed one again,
// else the pending watch time as a new batch.
func (p *Redis) prepareFlush() []flushItem {
	now := p.now()
	var items []flushItem
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, r := range p.rooms {
		expireLocked(r, p.cfg.TTL, now)
		if len(r.sessions) == 0 && !r.present && len(r.pending) == 0 && r.unacked == nil {
			delete(p.rooms, id)
			continue
		}
		if r.unacked == nil && len(r.pending) > 0 {
			p.batch++
			r.unacked = &watchBatch{id: p.run + "." + strconv.FormatUint(p.batch, 10), w: r.pending}
			r.pending = map[string]*Watch{}
		}
		it := flushItem{room: id, count: len(r.sessions), batch: r.unacked}
		aud := ""
		if r.dirty && it.count > 0 {
			aud = p.audienceLocked(r)
			it.audience = true
		}
		args := []string{p.cfg.NodeID, strconv.Itoa(it.count), aud, ms(p.cfg.NodeTTL), ms(keyTTL), maxWatchersArg}
		if b := r.unacked; b != nil {
			args = append(args, b.id)
			for _, w := range b.w {
				args = append(args, w.UserID, w.Name, strconv.FormatInt(w.Seconds, 10))
			}
		}
		r.dirty = false
		it.call = scriptCall{keys: p.keys(id), args: args}
		items = append(items, it)
	}
	return items
}

// flushed records the results of one batch of writes (res is nil when the
// round trip failed): the counts written, the room totals and the watch
// batches confirmed; a room not written keeps its audience and its watch
// batch (which may or may not have been applied) for the next flush.
func (p *Redis) flushed(batch []flushItem, res []rueidis.RedisResult) {
	at := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, it := range batch {
		r := p.roomLocked(it.room)
		var arr []int64
		if res != nil {
			arr, _ = res[i].AsIntSlice()
		}
		if len(arr) < 2 { // not known to be written
			r.dirty = r.dirty || it.audience
			continue
		}
		if it.batch != nil && r.unacked == it.batch {
			r.unacked = nil
		}
		r.written, r.present = it.count, it.count > 0
		if arr[1] == 0 && !it.audience && it.count > 0 { // our entry had expired: send the audience again
			r.dirty = true
		}
		p.totals[it.room] = total{n: int(arr[0]), at: at}
	}
}

// audienceLocked encodes this node's top members of r (identified users,
// one entry each, highest level first).
func (p *Redis) audienceLocked(r *redisRoom) string {
	b, _ := json.Marshal(top(r.sessions.users(time.Time{}), p.cfg.Audience))
	return string(b)
}
