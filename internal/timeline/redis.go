package timeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/message"
	"roomcast/internal/rediscall"
)

// Redis is the Timeline shared by every node of a cluster (issue 5). Each
// room is a few Redis names sharing the hash tag {room}, so a room lives on
// one Redis Cluster shard:
//
//	PREFIX{room}:s       counter: the room's last assigned seq (never expires)
//	PREFIX{room}:e       the epoch of that counter (issue 8; never expires)
//	PREFIX{room}:t       the minute the stream's TTL was last refreshed (read
//	                     with the epoch in one MGET; never expires)
//	PREFIX{room}:x       stream: one entry per append call (group commit,
//	                     issue 14), id "<seq of its first message>-0", fields
//	                     t (newest ts, Unix ms), n (message count) and m (the
//	                     messages' JSON joined by "\n", seqs n consecutive).
//	                     An entry of the older layout (t and m, one message) is
//	                     read as an entry of one.
//	PREFIX{room}:c       sharded pub/sub channel: "<epoch> <json>\n<json>…" for every append call
//	PREFIX{room}:D:BUCKET  hash of idempotent sends' acknowledgements, field =
//	                     dedupe key (see dedupeBuckets), for at least DedupeTTL
//
// An append is one Lua script (R11) for a batch of messages (group commit,
// issue 14; Append is a batch of one), costing Redis a fixed number of
// commands per call, not per message: MGET the epoch (and the minute), HMGET the batch's
// dedupe keys (if any), INCRBY the counter once (a counter that starts again
// at 1 gets a new epoch and an empty stream: Redis lost the room), one XADD
// of the whole batch trimmed by MINID to about MaxCount messages, HSET the
// dedupe keys into two buckets (if any), SPUBLISH the batch once; once a
// minute it also refreshes the stream's TTL. Age is pruned by readers (Range).
// Redis runs a script atomically, so the notifications of a room leave
// Redis in seq order and a send is stored at most once.
//
// Upgrading from the one-entry-per-message layout: old entries are read as
// entries of one message; old per-key dedupe names (":d:KEY") are no longer
// consulted, so a retry of a send acknowledged in the last DedupeTTL before
// the upgrade may be stored again. Every node of a cluster must run the
// same layout (stop all, upgrade, start): an older node cannot read the
// new entries.
//
// Redis must keep what it acknowledged: run it with appendonly yes (and
// appendfsync always for zero loss on a crash) and maxmemory-policy
// noeviction. When it does not (a restart without persistence), the epoch
// tells readers so instead of reusing seqs under their cursors.
type Redis struct {
	c   rueidis.Client
	cfg RedisConfig
	now func() time.Time
}

var _ Timeline = (*Redis)(nil)

// RedisConfig configures a Redis timeline. Zero values mean the defaults.
type RedisConfig struct {
	Prefix    string // key prefix; default "rc:"
	Retention Retention
	Call      rediscall.Func // nil: commands run directly
}

// DefaultPrefix prefixes every key and channel of a cluster unless set.
const DefaultPrefix = "rc:"

// NewRedis returns a timeline on c. It does not own c.
func NewRedis(c rueidis.Client, cfg RedisConfig) *Redis {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	cfg.Retention = cfg.Retention.Defaults()
	return &Redis{c: c, cfg: cfg, now: time.Now}
}

// RedisChannel is the sharded channel on which appends to room are published.
// The bus subscribes to it for nodes that have viewers of room.
func RedisChannel(prefix, room string) string { return prefix + "{" + room + "}:c" }

// maxEntry bounds the messages of one stream entry: a larger batch takes
// several entries. Count trimming keeps maxEntry-1 entries of slack so the
// entry holding the oldest retained message is never cut.
const maxEntry = 256

// keys are the room's counter, stream and epoch, the dedupe buckets of now
// (see dedupeBuckets) and the minute of the stream's last TTL refresh.
func (t *Redis) keys(room string, now time.Time) []string {
	base := t.cfg.Prefix + "{" + room + "}"
	cur, next := dedupeBuckets(now)
	return []string{base + ":s", base + ":x", base + ":e", base + ":D:" + strconv.FormatInt(cur, 10), base + ":D:" + strconv.FormatInt(next, 10), base + ":t"}
}

// dedupeBuckets: an acknowledgement remembered at now goes into two hashes,
// those of the DedupeTTL-long time buckets cur and next, and a lookup reads
// only the bucket of its own time. An ack made at t is thus found until the
// end of t's next bucket — for between DedupeTTL and twice that — and
// remembering the keys of a whole batch costs one HMGET and two HSETs, not
// a command per key. Bucket cur expires after its end (plus a minute of
// clock slack), next one bucket later.
func dedupeBuckets(now time.Time) (cur, next int64) {
	cur = now.UnixMilli() / DedupeTTL.Milliseconds()
	return cur, cur + 1
}

// bucketExpiry is when the bucket hashes cur and next of now expire (Unix ms).
func bucketExpiry(now time.Time) (cur, next int64) {
	c, _ := dedupeBuckets(now)
	ttl, slack := DedupeTTL.Milliseconds(), time.Minute.Milliseconds()
	return (c+1)*ttl + slack, (c+2)*ttl + slack
}

// rangeScript: KEYS as appendBatchScript; ARGV[1] after, ARGV[2] limit,
// ARGV[3] age cutoff, ARGV[4] MaxCount. Returns {head, first, epoch,
// blob...}, each blob one or more consecutive messages' JSON joined by "\n".
// When the oldest entry is expired it first drops expired entries (bounded),
// so first is honest for a room that went quiet; messages below the count
// bound (kept because they share an entry with a retained one) are skipped.
var rangeScript = rueidis.NewLuaScript(`
local function body(e)
  local f = e[2]
  if f[3] == 'n' then return tonumber(f[4]), f[6] end
  return 1, f[4]
end
local function id(e) return tonumber(string.match(e[1], '^%d+')) end
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local ev = redis.call('GET', KEYS[3])
local epoch = ''
if ev and head > 0 then epoch = string.match(ev, '^%S*') end
local cutoff = tonumber(ARGV[3])
local o = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #o > 0 and tonumber(o[1][2][2]) < cutoff then
  for _ = 1, 4 do
    local es = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 64)
    local last = nil
    for _, e in ipairs(es) do
      if tonumber(e[2][2]) < cutoff then last = e else break end
    end
    if not last then break end
    redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', id(last) + 1))
    if last ~= es[#es] or #es < 64 then break end
  end
  o = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
end
local first = head + 1
if #o > 0 then first = math.max(id(o[1]), head - tonumber(ARGV[4]) + 1) end
local out = {head, first, epoch}
local after = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
if want <= 0 or after >= head then return out end
local from = math.max(after + 1, first)
local sid = string.format('%d', from)
local at = redis.call('XREVRANGE', KEYS[2], sid, '-', 'COUNT', 1)
if #at > 0 then sid = at[1][1] end
for _, e in ipairs(redis.call('XRANGE', KEYS[2], sid, '+', 'COUNT', want + 1)) do
  if want <= 0 then break end
  local f = id(e)
  local n, m = body(e)
  if f + n > from then
    local skip = math.max(0, from - f)
    local take = math.min(n - skip, want)
    if skip == 0 and take == n then
      out[#out + 1] = m
    else
      local s = 1
      for _ = 1, skip do s = string.find(m, '\n', s, true) + 1 end
      local stop = #m
      local p = s
      for k = 1, take do
        local nl = string.find(m, '\n', p, true)
        if k == take then
          if nl then stop = nl - 1 end
        else
          p = nl + 1
        end
      end
      out[#out + 1] = string.sub(m, s, stop)
    end
    want = want - take
  end
end
return out
`)

// seqPrefix is how every encoded message starts before its seq digits.
const seqPrefix = `{"seq":`

// Append implements Timeline: a batch of one (see AppendBatch), so a
// single send and a group commit store and publish the same way.
func (t *Redis) Append(ctx context.Context, m *message.Message) (uint64, error) {
	errs, err := t.AppendBatch(ctx, []*message.Message{m})
	if err != nil {
		return 0, err
	}
	if errs != nil && errs[0] != nil {
		return m.Seq, errs[0]
	}
	return m.Seq, nil
}

// parseAck reads a remembered acknowledgement: "seq\nts\npriority\nid".
func parseAck(raw string) (Ack, error) {
	f := strings.SplitN(raw, "\n", 4)
	if len(f) != 4 {
		return Ack{}, fmt.Errorf("bad remembered ack %q", raw)
	}
	seq, err1 := strconv.ParseUint(f[0], 10, 64)
	ts, err2 := strconv.ParseInt(f[1], 10, 64)
	prio, err3 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return Ack{}, fmt.Errorf("bad remembered ack %q: %w", raw, err)
	}
	return Ack{Seq: seq, TS: ts, Priority: prio, ID: f[3]}, nil
}

// epochOf is the epoch in the value of a room's epoch name: "<epoch>", or
// "<epoch> <minute>" as a build of 2026-12-01 (1a5db7e) wrote it.
func epochOf(v string) string {
	e, _, _ := strings.Cut(v, " ")
	return e
}

// Range implements Timeline.
func (t *Redis) Range(ctx context.Context, room string, after uint64, limit int) (Page, error) {
	now := t.now()
	cutoff := now.Add(-t.cfg.Retention.MaxAge).UnixMilli()
	args := []string{strconv.FormatUint(after, 10), strconv.Itoa(max(limit, 0)), strconv.FormatInt(cutoff, 10), strconv.Itoa(t.cfg.Retention.MaxCount)}
	var arr []rueidis.RedisMessage
	err := t.cfg.Call.Do(ctx, "timeline_range", 1, func(ctx context.Context) error {
		var err error
		arr, err = rangeScript.Exec(ctx, t.c, t.keys(room, now), args).ToArray()
		return err
	})
	if err != nil {
		return Page{}, fmt.Errorf("timeline: range %s: %w: %w", room, ErrUnavailable, err)
	}
	if len(arr) < 3 {
		return Page{}, fmt.Errorf("timeline: range %s: short reply (%d values)", room, len(arr))
	}
	head, err1 := arr[0].AsInt64()
	first, err2 := arr[1].AsInt64()
	epoch, err3 := arr[2].ToString()
	if err := errors.Join(err1, err2, err3); err != nil {
		return Page{}, fmt.Errorf("timeline: range %s: %w", room, err)
	}
	p := Page{Head: uint64(head), First: uint64(first), Epoch: epoch, Msgs: make([]*message.Message, 0, max(0, min(limit, int(head-first+1))))}
	for _, v := range arr[3:] {
		blob, err := v.AsBytes()
		if err != nil {
			return Page{}, fmt.Errorf("timeline: range %s: %w", room, err)
		}
		for len(blob) > 0 {
			raw := blob
			if i := bytes.IndexByte(blob, '\n'); i >= 0 {
				raw, blob = blob[:i], blob[i+1:]
			} else {
				blob = nil
			}
			m, err := DecodeMessage(raw)
			if err != nil {
				return Page{}, fmt.Errorf("timeline: range %s: %w", room, err)
			}
			m.Epoch = epoch
			p.Msgs = append(p.Msgs, m)
		}
	}
	return p, nil
}

// Head implements Timeline.
func (t *Redis) Head(ctx context.Context, room string) (Position, error) {
	var pos Position
	k := t.keys(room, t.now())
	err := t.cfg.Call.Do(ctx, "timeline_head", 1, func(ctx context.Context) error {
		vals, err := t.c.Do(ctx, t.c.B().Mget().Key(k[0], k[2]).Build()).ToArray()
		if err != nil || len(vals) != 2 {
			return errors.Join(err, fmt.Errorf("mget: %d values", len(vals)))
		}
		if head, err := vals[0].AsInt64(); err == nil {
			pos.Head = uint64(head)
		} else if !rueidis.IsRedisNil(err) {
			return err
		}
		if pos.Head > 0 {
			e, _ := vals[1].ToString() // nil: the counter predates epochs; the next append makes one
			pos.Epoch = epochOf(e)
		}
		return nil
	})
	if err != nil {
		return Position{}, fmt.Errorf("timeline: head %s: %w: %w", room, ErrUnavailable, err)
	}
	return pos, nil
}

// rotateScript: KEYS as appendBatchScript; ARGV[1] the epoch to replace,
// ARGV[2] its replacement. Returns the epoch afterwards. The dedupe buckets
// go with the old epoch: their acks name its seqs.
var rotateScript = rueidis.NewLuaScript(`
local e = redis.call('GET', KEYS[3])
if e then e = string.match(e, '^%S*') end
if e == ARGV[1] and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[3], ARGV[2])
  redis.call('DEL', KEYS[4], KEYS[5])
  return ARGV[2]
end
return e or ''
`)

// Rotate implements Timeline.
func (t *Redis) Rotate(ctx context.Context, room, from string) (string, error) {
	var epoch string
	err := t.cfg.Call.Do(ctx, "timeline_rotate", 1, func(ctx context.Context) error {
		var err error
		epoch, err = rotateScript.Exec(ctx, t.c, t.keys(room, t.now()), []string{from, newEpoch()}).ToString()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("timeline: rotate %s: %w: %w", room, ErrUnavailable, err)
	}
	return epoch, nil
}

// Recall implements Timeline: one HGET of the current dedupe bucket. The
// buckets hold acks of the current epoch only (a new epoch deletes them).
func (t *Redis) Recall(ctx context.Context, room, key string) (Ack, bool, error) {
	k := t.keys(room, t.now())
	var a Ack
	var ok bool
	err := t.cfg.Call.Do(ctx, "timeline_recall", 1, func(ctx context.Context) error {
		d, err := t.c.Do(ctx, t.c.B().Hget().Key(k[3]).Field(key).Build()).ToString()
		if rueidis.IsRedisNil(err) {
			return nil
		} else if err != nil {
			return err
		}
		e, rest, found := strings.Cut(d, "\n")
		if !found {
			return fmt.Errorf("bad remembered ack %q", d)
		}
		a, err = parseAck(rest)
		a.Epoch, ok = e, err == nil
		return err
	})
	if err != nil {
		return Ack{}, false, fmt.Errorf("timeline: recall %s: %w: %w", room, ErrUnavailable, err)
	}
	return a, ok, nil
}

// Close implements Timeline. The client belongs to the caller.
func (t *Redis) Close() error { return nil }

// DecodeMessage decodes a message stored or published as JSON (by Seal's
// encoder) and seals it again, so its encoding is the same bytes.
func DecodeMessage(raw []byte) (*message.Message, error) {
	m := new(message.Message)
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	m.Seal()
	return m, nil
}
