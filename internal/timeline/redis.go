package timeline

import (
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
//	PREFIX{room}:s      counter: the room's last assigned seq (never expires)
//	PREFIX{room}:e      the epoch of that counter (issue 8; never expires)
//	PREFIX{room}:x      stream: entry "<seq>-0" with fields t (ts, Unix ms) and m (the message JSON)
//	PREFIX{room}:c      sharded pub/sub channel: "<epoch> <json>\n<json>…" for every append call
//	PREFIX{room}:d:KEY  an idempotent send's acknowledgement, for DedupeTTL
//
// An append is one Lua script (R11) for a batch of messages (group commit,
// issue 14; Append is a batch of one): look up the sends' dedupe keys,
// INCRBY the counter once (a counter that starts again at 1 gets a new
// epoch and an empty stream: Redis lost the room), build each message's
// JSON around its seq, XADD it trimmed to MaxCount, drop a few entries
// older than MaxAge, SPUBLISH the batch once and remember the dedupe keys.
// Redis runs a script atomically, so the notifications of a room leave
// Redis in seq order and a send is stored at most once.
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

// keys are the room's counter, stream and epoch (and, with dedupe, the
// dedupe key's name).
func (t *Redis) keys(room, dedupe string) []string {
	base := t.cfg.Prefix + "{" + room + "}"
	if dedupe != "" {
		return []string{base + ":s", base + ":x", base + ":e", base + ":d:" + dedupe}
	}
	return []string{base + ":s", base + ":x", base + ":e"}
}

// rangeScript: KEYS as appendScript; ARGV[1] after, ARGV[2] limit, ARGV[3]
// age cutoff. Returns {head, first, epoch, json...}. It first drops expired
// entries (bounded), so first is honest for a room that went quiet.
var rangeScript = rueidis.NewLuaScript(`
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[3]) or ''
if head == 0 then epoch = '' end
local cutoff = tonumber(ARGV[3])
for _ = 1, 4 do
  local es = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 64)
  local last = nil
  for _, e in ipairs(es) do
    if tonumber(e[2][2]) < cutoff then last = e[1] else break end
  end
  if not last then break end
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', tonumber(string.match(last, '^%d+')) + 1))
  if last ~= es[#es][1] or #es < 64 then break end
end
local first = head + 1
local o = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #o > 0 then first = tonumber(string.match(o[1][1], '^%d+')) end
local out = {head, first, epoch}
local after = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit > 0 and after < head then
  local from = math.max(after + 1, first)
  for _, e in ipairs(redis.call('XRANGE', KEYS[2], string.format('%d', from), '+', 'COUNT', limit)) do
    out[#out + 1] = e[2][4]
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

// Range implements Timeline.
func (t *Redis) Range(ctx context.Context, room string, after uint64, limit int) (Page, error) {
	cutoff := t.now().Add(-t.cfg.Retention.MaxAge).UnixMilli()
	args := []string{strconv.FormatUint(after, 10), strconv.Itoa(max(limit, 0)), strconv.FormatInt(cutoff, 10)}
	var arr []rueidis.RedisMessage
	err := t.cfg.Call.Do(ctx, "timeline_range", 1, func(ctx context.Context) error {
		var err error
		arr, err = rangeScript.Exec(ctx, t.c, t.keys(room, ""), args).ToArray()
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
	p := Page{Head: uint64(head), First: uint64(first), Epoch: epoch, Msgs: make([]*message.Message, 0, len(arr)-3)}
	for _, v := range arr[3:] {
		raw, err := v.AsBytes()
		if err != nil {
			return Page{}, fmt.Errorf("timeline: range %s: %w", room, err)
		}
		m, err := DecodeMessage(raw)
		if err != nil {
			return Page{}, fmt.Errorf("timeline: range %s: %w", room, err)
		}
		m.Epoch = epoch
		p.Msgs = append(p.Msgs, m)
	}
	return p, nil
}

// Head implements Timeline.
func (t *Redis) Head(ctx context.Context, room string) (Position, error) {
	var pos Position
	k := t.keys(room, "")
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
			pos.Epoch, _ = vals[1].ToString() // nil: the counter predates epochs; the next append makes one
		}
		return nil
	})
	if err != nil {
		return Position{}, fmt.Errorf("timeline: head %s: %w: %w", room, ErrUnavailable, err)
	}
	return pos, nil
}

// rotateScript: KEYS[1] counter, KEYS[3] epoch; ARGV[1] the epoch to
// replace, ARGV[2] its replacement. Returns the epoch afterwards.
var rotateScript = rueidis.NewLuaScript(`
local e = redis.call('GET', KEYS[3])
if e == ARGV[1] and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[3], ARGV[2])
  return ARGV[2]
end
return e or ''
`)

// Rotate implements Timeline.
func (t *Redis) Rotate(ctx context.Context, room, from string) (string, error) {
	var epoch string
	err := t.cfg.Call.Do(ctx, "timeline_rotate", 1, func(ctx context.Context) error {
		var err error
		epoch, err = rotateScript.Exec(ctx, t.c, t.keys(room, ""), []string{from, newEpoch()}).ToString()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("timeline: rotate %s: %w: %w", room, ErrUnavailable, err)
	}
	return epoch, nil
}

// Recall implements Timeline.
func (t *Redis) Recall(ctx context.Context, room, key string) (Ack, bool, error) {
	k := t.keys(room, key)
	var a Ack
	var ok bool
	err := t.cfg.Call.Do(ctx, "timeline_recall", 1, func(ctx context.Context) error {
		vals, err := t.c.Do(ctx, t.c.B().Mget().Key(k[2], k[3]).Build()).ToArray()
		if err != nil || len(vals) != 2 {
			return errors.Join(err, fmt.Errorf("mget: %d values", len(vals)))
		}
		epoch, err1 := vals[0].ToString()
		d, err2 := vals[1].ToString()
		if err1 != nil || err2 != nil { // nil: no epoch or no such key
			return nil
		}
		e, rest, found := strings.Cut(d, "\n")
		if !found || e != epoch {
			return nil
		}
		a, err = parseAck(rest)
		a.Epoch, ok = epoch, err == nil
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
