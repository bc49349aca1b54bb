package timeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/message"
)

// AppendBatch appends msgs — all of one room, in order — as Append would,
// one after the other under the room's lock. errs[i] is ErrDuplicate for a
// repeated Dedupe key (the message then holds the first append's ack).
func (t *Memory) AppendBatch(ctx context.Context, msgs []*message.Message) (errs []error, err error) {
	for i, m := range msgs {
		if _, err := t.Append(ctx, m); err != nil {
			if !errors.Is(err, ErrDuplicate) {
				return nil, err
			}
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = err
		}
	}
	return errs, nil
}

// appendBatchScript stores a batch of one room's messages in one call
// (group commit, R12) with a fixed number of commands whatever its size:
// MGET the epoch and the minute, one HMGET of the batch's dedupe keys in the current
// bucket, one INCRBY for the new seqs, one XADD of all of them (one per
// maxEntry messages), an HSET of the new dedupe keys into each of the two
// buckets, one SPUBLISH of the whole batch ("<epoch> <json>\n<json>…", which
// the bus splits); once a minute a SET of the minute and a PEXPIRE
// of the stream. KEYS[1] counter, KEYS[2] stream, KEYS[3] epoch, KEYS[6] the
// minute of the stream's last TTL refresh (read with the epoch: one MGET), KEYS[4]
// and KEYS[5] the current and next dedupe buckets. ARGV[1] n, ARGV[2] max
// count, ARGV[3] the minute (Unix ms / 60000), ARGV[4] stream TTL (ms),
// ARGV[5] channel, ARGV[6] a fresh epoch, ARGV[7] and ARGV[8] the buckets'
// expiry (Unix ms), ARGV[9] maxEntry, then per message: JSON after
// `{"seq":0`, ts, id, priority, dedupe key ("" = none). Returns {epoch,
// seq1, ack1, …}: seq -1 with "seq\nts\npriority\nid" for a duplicate, else
// the new seq and "".
var appendBatchScript = rueidis.NewLuaScript(`
local n, B = tonumber(ARGV[1]), 9
local et = redis.call('MGET', KEYS[3], KEYS[6])
local epoch, minute = et[1] and string.match(et[1], '^%S+'), et[2]
local dkeys, known = {}, {}
for i = 1, n do
  local k = ARGV[B + i * 5]
  if k ~= '' then dkeys[#dkeys + 1] = k end
end
if #dkeys > 0 and epoch then
  local vals = redis.call('HMGET', KEYS[4], unpack(dkeys))
  for j, k in ipairs(dkeys) do
    if vals[j] then
      local e, ack = string.match(vals[j], '^([^\n]*)\n(.*)$')
      if e == epoch then known[k] = ack end
    end
  end
end
local dup, firstIn, fresh = {}, {}, 0
for i = 1, n do
  local k = ARGV[B + i * 5]
  if k ~= '' and (known[k] or firstIn[k]) then
    dup[i] = true
  else
    fresh = fresh + 1
    if k ~= '' then firstIn[k] = true end
  end
end
local seq = 0
if fresh > 0 then
  seq = redis.call('INCRBY', KEYS[1], fresh) - fresh
  if seq == 0 or not epoch then
    epoch, minute = ARGV[6], nil
    redis.call('SET', KEYS[3], epoch)
    redis.call('DEL', KEYS[4], KEYS[5])
    if seq == 0 then redis.call('DEL', KEYS[2]) end
  end
end
local out, pub, hs, acks = {epoch or ''}, {}, {}, {}
local newest = 0
for i = 1, n do
  local b = B + (i - 1) * 5
  local k = ARGV[b + 5]
  if dup[i] then
    out[#out + 1] = -1
    out[#out + 1] = known[k] or acks[k]
  else
    seq = seq + 1
    local s = string.format('%d', seq)
    pub[#pub + 1] = '{"seq":' .. s .. ARGV[b + 1]
    newest = math.max(newest, tonumber(ARGV[b + 2]))
    if k ~= '' then
      acks[k] = s .. '\n' .. ARGV[b + 2] .. '\n' .. ARGV[b + 4] .. '\n' .. ARGV[b + 3]
      hs[#hs + 1] = k
      hs[#hs + 1] = epoch .. '\n' .. acks[k]
    end
    out[#out + 1] = seq
    out[#out + 1] = ''
  end
end
if #pub == 0 then return out end
local E = tonumber(ARGV[9])
local all = table.concat(pub, '\n')
local minid = seq - tonumber(ARGV[2]) - E + 2
local first = seq - #pub + 1
for c = 1, #pub, E do
  local last = math.min(c + E - 1, #pub)
  local m = all
  if #pub > E then m = table.concat(pub, '\n', c, last) end
  local id = string.format('%d', first + c - 1) .. '-0'
  local t, cnt = string.format('%d', newest), string.format('%d', last - c + 1)
  if minid > 1 then
    redis.call('XADD', KEYS[2], 'MINID', '~', string.format('%d', minid), id, 't', t, 'n', cnt, 'm', m)
  else
    redis.call('XADD', KEYS[2], id, 't', t, 'n', cnt, 'm', m)
  end
end
if #hs > 0 then
  -- "@" marks a bucket that has its expiry: the ack fields are always new
  -- (a key found in the bucket is a duplicate), so a count above theirs
  -- means "@" was new too.
  for j, key in ipairs({KEYS[4], KEYS[5]}) do
    if redis.call('HSET', key, '@', epoch, unpack(hs)) ~= #hs / 2 then
      redis.call('PEXPIREAT', key, ARGV[6 + j])
    end
  end
end
if minute ~= ARGV[3] then
  redis.call('SET', KEYS[6], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('SPUBLISH', ARGV[5], epoch .. ' ' .. all)
return out
`)

// AppendBatch appends msgs — all of one room, in order — in one script
// call (group commit, R12). An error fails the whole batch: no message of
// it may be acknowledged. errs[i] is ErrDuplicate for a repeated Dedupe key
// (the message then holds the first append's ack).
func (t *Redis) AppendBatch(ctx context.Context, msgs []*message.Message) ([]error, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	room := msgs[0].Room
	now := t.now()
	ret := t.cfg.Retention
	curExp, nextExp := bucketExpiry(now)
	args := make([]string, 0, 9+5*len(msgs))
	args = append(args, strconv.Itoa(len(msgs)), strconv.Itoa(ret.MaxCount), strconv.FormatInt(now.UnixMilli()/60000, 10),
		strconv.FormatInt((ret.MaxAge+2*time.Minute).Milliseconds(), 10), RedisChannel(t.cfg.Prefix, room), newEpoch(),
		strconv.FormatInt(curExp, 10), strconv.FormatInt(nextExp, 10), strconv.Itoa(maxEntry))
	buf := make([]byte, 0, 256)
	for _, m := range msgs {
		if m.Room != room {
			return nil, fmt.Errorf("timeline: a batch for %s holds a message of %s", room, m.Room)
		}
		if m.TS == 0 {
			m.TS = now.UnixMilli()
		}
		m.Seq = 0
		buf = m.AppendJSON(buf[:0])
		args = append(args, string(buf[len(seqPrefix)+1:]), strconv.FormatInt(m.TS, 10), m.ID, strconv.Itoa(m.Priority), m.Dedupe)
	}
	var arr []rueidis.RedisMessage
	err := t.cfg.Call.Do(ctx, "timeline_append", 1, func(ctx context.Context) error {
		var err error
		arr, err = appendBatchScript.Exec(ctx, t.c, t.keys(room, now), args).ToArray()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("timeline: append %d to %s: %w: %w", len(msgs), room, ErrUnavailable, err)
	}
	if len(arr) != 1+2*len(msgs) {
		return nil, fmt.Errorf("timeline: append to %s: %d values for %d messages", room, len(arr), len(msgs))
	}
	epoch, err := arr[0].ToString()
	if err != nil {
		return nil, fmt.Errorf("timeline: append to %s: %w", room, err)
	}
	var errs []error
	for i, m := range msgs {
		seq, err1 := arr[1+2*i].AsInt64()
		raw, err2 := arr[2+2*i].ToString()
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("timeline: append to %s: %w", room, err)
		}
		m.Epoch = epoch
		if seq < 0 {
			a, err := parseAck(raw)
			if err != nil {
				return nil, fmt.Errorf("timeline: append to %s: %w", room, err)
			}
			m.Seq, m.ID, m.TS, m.Priority = a.Seq, a.ID, a.TS, a.Priority
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = ErrDuplicate
		} else {
			m.Seq = uint64(seq)
		}
		m.Seal()
	}
	return errs, nil
}
