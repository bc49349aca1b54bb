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
//	PREFIX{room}:m       meta hash (issue 14; never expires): @s the counter
//	                     (the room's last assigned seq), @e its epoch (issue
//	                     8), @t the minute the stream's TTL was last
//	                     refreshed, @b the dedupe bucket of the acks it
//	                     holds, @p the previous bucket ("" none), @a "1" when
//	                     it holds acks; every other field is the ack of an
//	                     idempotent send, field = dedupe key ("@" doubled if
//	                     it starts with one), value "epoch\nseq\nts\nprio\nid"
//	PREFIX{room}:A:BUCKET  the previous bucket's acks: the meta hash's acks,
//	                     renamed away when the next bucket begins (see
//	                     bucketLen), unlinked DedupeTTL later (or expires)
//	PREFIX{room}:x       stream: one entry per append call (group commit,
//	                     issue 14), id "<seq of its first message>-0", fields
//	                     t (newest ts, Unix ms), n (message count) and m (the
//	                     messages' JSON joined by "\n", seqs n consecutive).
//	                     An entry of the older layout (t and m, one message) is
//	                     read as an entry of one.
//	PREFIX{room}:c       sharded pub/sub channel: "<epoch> <json>\n<json>…" for every append call
//	PREFIX{room}:s       movedMarker: an older roomcast's counter, read once
//	                     to carry a room over (below), then a marker on
//	                     which an older node's INCRBY fails
//
// An append is one Lua script (R11) for a batch of messages (group commit,
// issue 14; Append is a batch of one), costing Redis a fixed number of
// commands per call, not per message (see appendBatchScript): one HMGET of
// the meta hash reads the counter, epoch, minute and the batch's dedupe
// keys, one HMGET reads the keys in the previous bucket (idempotent sends
// only), one XADD stores the whole batch trimmed by MINID to about MaxCount
// messages, one HSET writes the new counter and acks, one SPUBLISH
// publishes the batch: 5 commands per call with the EVALSHA, 6 with dedupe
// keys during the first half of a bucket (bucketLen). Once a minute it
// also refreshes the stream's TTL, once a bucket it rotates the acks (O(1):
// UNLINK, RENAME, PEXPIREAT). Age is pruned by
// readers (Range), which also rotate an idle room's acks out of its meta
// hash. A missing meta hash (and no old counter) is a room Redis lost: the
// next append starts a new epoch at seq 1 with an empty stream. Redis runs
// a script atomically, so the notifications of a room leave Redis in seq
// order and a send is stored at most once.
//
// Upgrading from the layout before the meta hash (counter :s, epoch :e,
// minute :t, acks in buckets :D:BUCKET written twice): the first append to
// a room carries it over inside the script — counter, epoch and minute,
// and the old bucket of now renamed into the meta hash, so acks remembered
// before the upgrade still answer — then DELetes :e and :t and sets :s to
// movedMarker, on which an older node's append, range and head fail with
// an error instead of handing out seqs of a second counter. Readers of a
// room not yet carried over read the old names. So during a rolling
// upgrade, a room sent to through a new node stops working on the old
// nodes (loudly, never with duplicate seqs): upgrade every node before
// sending through any upgraded one, or accept errors on the old ones until
// they are upgraded. Old entries of the one-entry-per-message layout are
// read as entries of one message.
//
// Redis must keep what it acknowledged: run it with appendonly yes (and
// appendfsync always for zero loss on a crash) and maxmemory-policy
// noeviction. When it does not (a restart without persistence), the epoch
// tells readers so instead of reusing seqs under their cursors. The
// previous bucket's hash of an idle room is freed by expiry: set
// lazyfree-lazy-expire yes so that a large one does not block Redis.
type Redis struct {
	c     rueidis.Client
	cfg   RedisConfig
	now   func() time.Time
	sweep *sweeper // nil when cfg.Sweep is 0
}

var _ Timeline = (*Redis)(nil)

// RedisConfig configures a Redis timeline. Zero values mean the defaults.
type RedisConfig struct {
	Prefix    string // key prefix; default "rc:"
	Retention Retention
	Call      rediscall.Func // nil: commands run directly
	// Sweep is how often the node looks for rooms it sent idempotent
	// messages to that went quiet, to rotate their acks out of their meta
	// hash (see sweeper); 0 means never (Close stops the sweeping).
	Sweep time.Duration
}

// DefaultPrefix prefixes every key and channel of a cluster unless set.
const DefaultPrefix = "rc:"

// NewRedis returns a timeline on c. It does not own c.
func NewRedis(c rueidis.Client, cfg RedisConfig) *Redis {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	cfg.Retention = cfg.Retention.Defaults()
	t := &Redis{c: c, cfg: cfg, now: time.Now}
	if cfg.Sweep > 0 {
		t.sweep = &sweeper{t: t, every: cfg.Sweep, rooms: map[string]int64{}}
	}
	return t
}

// RedisChannel is the sharded channel on which appends to room are published.
// The bus subscribes to it for nodes that have viewers of room.
func RedisChannel(prefix, room string) string { return prefix + "{" + room + "}:c" }

// maxEntry bounds the messages of one stream entry: a larger batch takes
// several entries. Count trimming keeps maxEntry-1 entries of slack so the
// entry holding the oldest retained message is never cut.
const maxEntry = 256

// rangeScript: KEYS as appendBatchScript; ARGV[1] after, ARGV[2] limit,
// ARGV[3] age cutoff, ARGV[4] MaxCount, ARGV[5..8] bucketArgs. Returns {head, first, epoch,
// blob...}, each blob one or more consecutive messages' JSON joined by "\n".
// When the oldest entry is expired it first drops expired entries (bounded),
// so first is honest for a room that went quiet; messages below the count
// bound (kept because they share an entry with a retained one) are skipped.
// A reader also rotates the dedupe buckets of a room no longer sent to, so
// an idle room's acks leave its meta hash.
var rangeScript = rueidis.NewLuaScript(metaLua + `
local function body(e)
  local f = e[2]
  if f[3] == 'n' then return tonumber(f[4]), f[6] end
  return 1, f[4]
end
local function id(e) return tonumber(string.match(e[1], '^%d+')) end
local m = readMeta({})
local head, epoch = m.s, m.e
if head then
  rotate(m, bk(5))
else
  head, epoch = readOld()
  head = head or 0
end
if head == 0 or not epoch then epoch = '' end
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
	args = append(args, bucketArgs(now)...)
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

// Close implements Timeline: it stops the sweeping. The client belongs to
// the caller.
func (t *Redis) Close() error {
	if t.sweep != nil {
		t.sweep.close()
	}
	return nil
}

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
