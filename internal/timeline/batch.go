package timeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// (group commit, R12) with a fixed number of commands whatever its size
// (issue 14: at most 0.1 per message): one HMGET of the meta hash reads
// the counter, epoch, minute, buckets and the batch's dedupe keys; one
// HMGET reads the batch's keys in the previous bucket's hash (only with
// dedupe keys, and only during the first DedupeTTL of a bucket, while that
// hash holds young acks); one XADD stores all the new messages (one per
// maxEntry); one HSET writes the new counter and acks into the meta hash;
// one SPUBLISH publishes the whole batch ("<epoch> <json>\n<json>…", which
// the bus splits). With the EVALSHA: 5 commands per call, 6 for a batch
// with dedupe keys during the first half of a bucket. Once a minute a
// PEXPIRE of the stream (its minute rides in the HSET); twice a bucket the
// rotation (rotate in metaLua); once per room the carry-over from the
// layout before the meta hash (KEYS[3..6]).
//
// KEYS: see Redis.keys. ARGV[1] n, ARGV[2] max count, ARGV[3] the minute
// (Unix ms / 60000), ARGV[4] stream TTL (ms), ARGV[5] channel, ARGV[6] a
// fresh epoch, ARGV[7..10] bucketArgs, ARGV[11] maxEntry, ARGV[12]
// movedMarker, then per message: JSON after `{"seq":0`, ts, id, priority,
// ack field ("" = no dedupe key). Returns {epoch, seq1, ack1, …}: seq -1
// with "seq\nts\npriority\nid" for a duplicate, else the new seq and "".
var appendBatchScript = rueidis.NewLuaScript(metaLua + `
local n, B = tonumber(ARGV[1]), 12
local c = bk(7)
local dkeys = {}
for i = 1, n do
  local key = ARGV[B + i * 5]
  if key ~= '' then dkeys[#dkeys + 1] = key end
end
local m, v = readMeta(dkeys)
local known, init, carried = {}, false, false
local function look(vals, off)
  for j, key in ipairs(dkeys) do
    if not known[key] then known[key] = ackOf(vals[off + j], m.e) end
  end
end
if not m.s then
  -- No meta hash: a room of the layout before it (carried over with its
  -- bucket of now, so its acks still answer), a new room, or one Redis lost.
  local s, e, t = readOld()
  init = true
  m.s, m.e, m.t, m.b, m.p, m.a = s or 0, e, t, c.k, nil, nil
  if s and redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('RENAME', KEYS[6], M)
    redis.call('PERSIST', M)
    m.a, carried = '1', true
    if m.e and #dkeys > 0 then look(redis.call('HMGET', M, unpack(dkeys)), 0) end
  end
else
  if m.e and #dkeys > 0 then
    if m.a and young(m.b, c) then look(v, #META) end
    if young(m.p, c) then look(redis.call('HMGET', ackBase .. num(m.p), unpack(dkeys)), 0) end
  end
  rotate(m, c)
end
local dup, firstIn, fresh = {}, {}, 0
for i = 1, n do
  local key = ARGV[B + i * 5]
  if key ~= '' and (known[key] or firstIn[key]) then
    dup[i] = true
  else
    fresh = fresh + 1
    if key ~= '' then firstIn[key] = true end
  end
end
local seq = m.s
if fresh > 0 and (seq == 0 or not m.e) then
  -- A new epoch: a new room, a room Redis lost (its stream goes too), or a
  -- counter older than epochs.
  if seq == 0 then redis.call('UNLINK', KEYS[2]) end
  m.e, m.t, init = ARGV[6], nil, true
end
local out, pub, hs, acks = {m.e or ''}, {}, {}, {}
local newest = 0
for i = 1, n do
  local b = B + (i - 1) * 5
  local key = ARGV[b + 5]
  if dup[i] then
    out[#out + 1] = -1
    out[#out + 1] = known[key] or acks[key]
  else
    seq = seq + 1
    local s = num(seq)
    pub[#pub + 1] = '{"seq":' .. s .. ARGV[b + 1]
    newest = math.max(newest, tonumber(ARGV[b + 2]))
    if key ~= '' then
      acks[key] = s .. '\n' .. ARGV[b + 2] .. '\n' .. ARGV[b + 4] .. '\n' .. ARGV[b + 3]
      hs[#hs + 1] = key
      hs[#hs + 1] = m.e .. '\n' .. acks[key]
    end
    out[#out + 1] = seq
    out[#out + 1] = ''
  end
end
local all
if #pub > 0 then
  local E = tonumber(ARGV[11])
  all = table.concat(pub, '\n')
  local minid = seq - tonumber(ARGV[2]) - E + 2
  local first = seq - #pub + 1
  for c = 1, #pub, E do
    local last = math.min(c + E - 1, #pub)
    local msgs = all
    if #pub > E then msgs = table.concat(pub, '\n', c, last) end
    local id = num(first + c - 1) .. '-0'
    local t, cnt = num(newest), num(last - c + 1)
    if minid > 1 then
      redis.call('XADD', KEYS[2], 'MINID', '~', num(minid), id, 't', t, 'n', cnt, 'm', msgs)
    else
      redis.call('XADD', KEYS[2], id, 't', t, 'n', cnt, 'm', msgs)
    end
  end
end
if #hs > 0 and not m.a then
  hs[#hs + 1] = '@a'
  hs[#hs + 1] = '1'
end
if all or init then
  hs[#hs + 1] = '@s'
  hs[#hs + 1] = num(seq)
end
if init then
  for _, f in ipairs({'@e', m.e, '@b', num(m.b), '@p', ''}) do hs[#hs + 1] = f end
  if carried then
    hs[#hs + 1] = '@a'
    hs[#hs + 1] = '1'
  end
end
if all and m.t ~= ARGV[3] then
  hs[#hs + 1] = '@t'
  hs[#hs + 1] = ARGV[3]
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if #hs > 0 then redis.call('HSET', M, unpack(hs)) end
if init then
  -- An older roomcast's INCRBY on the old counter now fails loudly.
  redis.call('SET', KEYS[3], ARGV[12])
  redis.call('DEL', KEYS[4], KEYS[5])
end
if all then redis.call('SPUBLISH', ARGV[5], m.e .. ' ' .. all) end
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
	args := make([]string, 0, 12+5*len(msgs))
	args = append(args, strconv.Itoa(len(msgs)), strconv.Itoa(ret.MaxCount), strconv.FormatInt(now.UnixMilli()/60000, 10),
		strconv.FormatInt((ret.MaxAge+2*time.Minute).Milliseconds(), 10), RedisChannel(t.cfg.Prefix, room), newEpoch())
	args = append(args, bucketArgs(now)...)
	args = append(args, strconv.Itoa(maxEntry), movedMarker)
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
		args = append(args, string(buf[len(seqPrefix)+1:]), strconv.FormatInt(m.TS, 10), m.ID, strconv.Itoa(m.Priority), ackField(m.Dedupe))
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
	if t.sweep != nil && slices.ContainsFunc(msgs, func(m *message.Message) bool { return m.Dedupe != "" }) {
		t.sweep.note(room, now)
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
