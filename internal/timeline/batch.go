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
// (group commit, R12): dedupe lookups first, then one INCRBY for the new
// seqs, one XADD per message, one age-prune and PEXPIRE, and one SPUBLISH
// of the whole batch ("<epoch> <json>\n<json>…", which the bus splits).
// KEYS[1] counter, KEYS[2] stream, KEYS[3] epoch, KEYS[4…] dedupe keys.
// ARGV[1] n, ARGV[2] max count, ARGV[3] age cutoff (Unix ms), ARGV[4]
// stream TTL (ms), ARGV[5] channel, ARGV[6] a fresh epoch, ARGV[7] dedupe
// TTL (ms), then per message: JSON after `{"seq":0`, ts, id, priority,
// dedupe key index in KEYS (0 = none). Returns {epoch, seq1, ack1, …}: seq
// -1 with "seq\nts\npriority\nid" for a duplicate, else the new seq and "".
var appendBatchScript = rueidis.NewLuaScript(`
local n = tonumber(ARGV[1])
local epoch = redis.call('GET', KEYS[3])
local dup, fresh, seen = {}, 0, {}
for i = 1, n do
  local dk = tonumber(ARGV[7 + (i - 1) * 5 + 5])
  if dk > 0 then
    if seen[dk] then
      dup[i] = seen[dk]
    elseif epoch then
      local d = redis.call('GET', KEYS[dk])
      if d then
        local e, ack = string.match(d, '^([^\n]*)\n(.*)$')
        if e == epoch then dup[i] = ack end
      end
    end
    if not dup[i] then seen[dk] = true end
  end
  if not dup[i] then fresh = fresh + 1 end
end
local out = {}
local seq = 0
if fresh > 0 then
  seq = redis.call('INCRBY', KEYS[1], fresh) - fresh
  if seq == 0 or not epoch then
    epoch = ARGV[6]
    redis.call('SET', KEYS[3], epoch)
    if seq == 0 then redis.call('DEL', KEYS[2]) end
  end
end
local pub = {}
for i = 1, n do
  local b = 7 + (i - 1) * 5
  local d = dup[i]
  if d == true then
    -- a repeat of a key first seen in this batch: its ack is known now
    d = seen['ack' .. ARGV[b + 5]]
  end
  if d then
    out[#out + 1] = -1
    out[#out + 1] = d
  else
    seq = seq + 1
    local s = string.format('%d', seq)
    local msg = '{"seq":' .. s .. ARGV[b + 1]
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], s .. '-0', 't', ARGV[b + 2], 'm', msg)
    pub[#pub + 1] = msg
    local dk = tonumber(ARGV[b + 5])
    if dk > 0 then
      local ack = s .. '\n' .. ARGV[b + 2] .. '\n' .. ARGV[b + 4] .. '\n' .. ARGV[b + 3]
      redis.call('SET', KEYS[dk], epoch .. '\n' .. ack, 'PX', ARGV[7])
      seen['ack' .. ARGV[b + 5]] = ack
    end
    out[#out + 1] = seq
    out[#out + 1] = ''
  end
end
if #pub > 0 then
  local cutoff = tonumber(ARGV[3])
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
  if #oldest > 0 and tonumber(oldest[1][2][2]) < cutoff then
    local last = nil
    for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 8)) do
      if tonumber(e[2][2]) < cutoff then last = e[1] else break end
    end
    if last then
      redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', tonumber(string.match(last, '^%d+')) + 1))
    end
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('SPUBLISH', ARGV[5], epoch .. ' ' .. table.concat(pub, '\n'))
end
table.insert(out, 1, epoch or '')
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
	keys := t.keys(room, "")
	args := make([]string, 0, 7+5*len(msgs))
	args = append(args, strconv.Itoa(len(msgs)), strconv.Itoa(ret.MaxCount), strconv.FormatInt(now.Add(-ret.MaxAge).UnixMilli(), 10),
		strconv.FormatInt((ret.MaxAge+time.Minute).Milliseconds(), 10), RedisChannel(t.cfg.Prefix, room), newEpoch(),
		strconv.FormatInt(DedupeTTL.Milliseconds(), 10))
	dedupe := map[string]int{}
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
		dk := 0
		if m.Dedupe != "" {
			if dk = dedupe[m.Dedupe]; dk == 0 {
				keys = append(keys, t.cfg.Prefix+"{"+room+"}:d:"+m.Dedupe)
				dk = len(keys)
				dedupe[m.Dedupe] = dk
			}
		}
		args = append(args, string(buf[len(seqPrefix)+1:]), strconv.FormatInt(m.TS, 10), m.ID, strconv.Itoa(m.Priority), strconv.Itoa(dk))
	}
	var arr []rueidis.RedisMessage
	err := t.cfg.Call.Do(ctx, "timeline_append", 1, func(ctx context.Context) error {
		var err error
		arr, err = appendBatchScript.Exec(ctx, t.c, keys, args).ToArray()
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
