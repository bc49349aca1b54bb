package timeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// The room's meta hash (issue 14) and the layout before it: see the top of
// redis.go. Every script of the room gets the same KEYS, so any of them can
// read a room of either layout:
//
//	KEYS[1] PREFIX{room}:m     the meta hash (counter, epoch, minute, bucket, acks)
//	KEYS[2] PREFIX{room}:x     the stream
//	KEYS[3] PREFIX{room}:s     the old counter; in the new layout a marker (movedMarker)
//	KEYS[4] PREFIX{room}:e     the old epoch
//	KEYS[5] PREFIX{room}:t     the old minute of the stream's TTL refresh
//	KEYS[6] PREFIX{room}:D:K   the old layout's dedupe bucket of now
//
// The previous bucket's acks are in PREFIX{room}:A:P, a name the scripts
// make from KEYS[1] (same hash tag, so the same Redis Cluster slot).
func (t *Redis) keys(room string, now time.Time) []string {
	base := t.cfg.Prefix + "{" + room + "}"
	return []string{base + ":m", base + ":x", base + ":s", base + ":e", base + ":t", base + ":D:" + strconv.FormatInt(oldBucketOf(now), 10)}
}

// bucketLen is the length of a dedupe bucket. The meta hash holds the
// acks made in its bucket; when the next bucket begins they move, in one
// RENAME, to the previous bucket's hash, which lookups read as long as it
// holds acks younger than DedupeTTL — during the first DedupeTTL of a
// bucket — and which is then unlinked. An ack made at t is thus found
// until at least t + DedupeTTL, and at most until the end of its bucket
// plus DedupeTTL. Twice DedupeTTL makes that second read (the sixth
// command of an idempotent append) happen half the time, for the memory
// today's layout had: at most three DedupeTTLs of acks (two in the meta
// hash, one in the previous bucket's).
const bucketLen = 2 * DedupeTTL

// oldBucketOf is the bucket of now of the layout before the meta hash
// (DedupeTTL long), whose hash a room's first append carries over.
func oldBucketOf(now time.Time) int64 { return now.UnixMilli() / DedupeTTL.Milliseconds() }

// bucketSlack is how long past its last use a previous bucket's hash lives
// (clock differences between nodes).
const bucketSlack = time.Minute

// bucketArgs are the ARGV metaLua's bucket functions take: now (Unix ms),
// bucketLen, DedupeTTL and bucketSlack (ms).
func bucketArgs(now time.Time) []string {
	return []string{strconv.FormatInt(now.UnixMilli(), 10), strconv.FormatInt(bucketLen.Milliseconds(), 10),
		strconv.FormatInt(DedupeTTL.Milliseconds(), 10), strconv.FormatInt(bucketSlack.Milliseconds(), 10)}
}

// ackField is the meta hash field of a dedupe key: the meta fields start
// with "@", so a key that does too gets one more.
func ackField(key string) string {
	if strings.HasPrefix(key, "@") {
		return "@" + key
	}
	return key
}

// metaLua is the part of every room script that reads the meta hash, falls
// back to the layout before it, and rotates the buckets.
//
// Meta fields: @s the counter (last assigned seq), @e the epoch, @t the
// minute of the stream's last TTL refresh, @b the bucket of the acks in
// the hash, @p the bucket of the previous acks' hash ("" none), @a "1"
// when the hash holds acks. Every other field is an ack: dedupe key →
// "epoch\nseq\nts\npriority\nid".
const metaLua = `
local M = KEYS[1]
local ackBase = string.sub(M, 1, -2) .. 'A:'
local META = {'@s', '@e', '@t', '@b', '@p', '@a'}
local function num(x) return string.format('%d', x) end
-- readMeta: one HMGET of the meta fields and extra fields (their values
-- follow the meta's in the returned array).
local function readMeta(extra)
  local f = {}
  for i, x in ipairs(META) do f[i] = x end
  for _, x in ipairs(extra) do f[#f + 1] = x end
  local v = redis.call('HMGET', M, unpack(f))
  return {s = tonumber(v[1]), e = v[2] or nil, t = v[3] or nil, b = tonumber(v[4]), p = tonumber(v[5]), a = v[6] or nil}, v
end
-- readOld: counter, epoch and minute of the layout before the meta hash
-- (the counter is nil when absent, or when it is the marker of a moved room).
local function readOld()
  local o = redis.call('MGET', KEYS[3], KEYS[4], KEYS[5])
  return tonumber(o[1]), o[2] and string.match(o[2], '^%S+') or nil, o[3] or nil
end
-- Buckets: bk(now, L, ...) reads the ARGV from index i on (bucketArgs):
-- now, bucket length, DedupeTTL, slack.
local function bk(i)
  local b = {now = tonumber(ARGV[i]), L = tonumber(ARGV[i + 1]), T = tonumber(ARGV[i + 2]), slack = tonumber(ARGV[i + 3])}
  b.k = math.floor(b.now / b.L)
  return b
end
-- young: some acks of bucket j are younger than DedupeTTL.
local function young(j, c) return j ~= nil and c.now < (j + 1) * c.L + c.T end
-- rotate: the previous bucket's hash is unlinked once none of its acks is
-- young; once bucket c.k has begun, the meta hash's acks (of bucket m.b)
-- become the previous bucket's hash (RENAME) if young, else are unlinked.
-- The meta fields are written back. O(1) in the hashes' sizes: UNLINK
-- frees in the background.
local function rotate(m, c)
  local changed = false
  if m.p and not young(m.p, c) then
    redis.call('UNLINK', ackBase .. num(m.p))
    m.p, changed = nil, true
  end
  if m.b and m.b < c.k then
    if m.a then
      if young(m.b, c) then
        local prev = ackBase .. num(m.b)
        redis.call('UNLINK', prev)
        redis.call('RENAME', M, prev)
        redis.call('PEXPIREAT', prev, num((m.b + 1) * c.L + c.T + c.slack))
        m.p = m.b
      else
        redis.call('UNLINK', M)
      end
      m.a = nil
      redis.call('HSET', M, '@s', num(m.s), '@e', m.e or '', '@t', m.t or '', '@b', num(c.k), '@p', m.p and num(m.p) or '')
      m.b = c.k
      return
    end
    m.b, changed = c.k, true
  end
  if changed then redis.call('HSET', M, '@b', num(m.b), '@p', m.p and num(m.p) or '') end
end
-- ackOf: the ack in a remembered value if it is of epoch e.
local function ackOf(x, e)
  if not x then return nil end
  local xe, ack = string.match(x, '^([^\n]*)\n(.*)$')
  if xe == e then return ack end
  return nil
end
`

// movedMarker is what the old counter name holds once a room uses the meta
// hash: an older roomcast's INCRBY on it fails ("value is not an integer")
// instead of handing out seqs from a second counter.
const movedMarker = "moved to the meta hash :m by roomcast's issue-14 layout; upgrade this node"

// Head implements Timeline: one HMGET of the meta hash (and, for a room of
// the layout before it, one MGET of its counter and epoch).
func (t *Redis) Head(ctx context.Context, room string) (Position, error) {
	var pos Position
	k := t.keys(room, t.now())
	err := t.cfg.Call.Do(ctx, "timeline_head", 1, func(ctx context.Context) error {
		vals, err := t.c.Do(ctx, t.c.B().Hmget().Key(k[0]).Field("@s", "@e").Build()).ToArray()
		if err != nil || len(vals) != 2 {
			return errors.Join(err, fmt.Errorf("hmget: %d values", len(vals)))
		}
		if vals[0].IsNil() { // the layout before the meta hash
			if vals, err = t.c.Do(ctx, t.c.B().Mget().Key(k[2], k[3]).Build()).ToArray(); err != nil || len(vals) != 2 {
				return errors.Join(err, fmt.Errorf("mget: %d values", len(vals)))
			}
		}
		if s, err := vals[0].ToString(); err == nil {
			head, err := strconv.ParseUint(s, 10, 64)
			if err != nil && s != movedMarker {
				return fmt.Errorf("counter %q: %w", s, err)
			}
			pos.Head = head
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

// rotateScript: KEYS as above; ARGV[1] the epoch to replace, ARGV[2] its
// replacement. Returns the epoch afterwards. The acks remembered so far
// name seqs of the old epoch: lookups compare their epoch and skip them.
var rotateScript = rueidis.NewLuaScript(metaLua + `
local m = readMeta({})
if m.s then
  if m.e == ARGV[1] then
    redis.call('HSET', M, '@e', ARGV[2])
    return ARGV[2]
  end
  return m.e or ''
end
local s, e = readOld()
if s and e == ARGV[1] then
  redis.call('SET', KEYS[4], ARGV[2])
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

// recallScript: KEYS as above; ARGV[1] the ack field, ARGV[2..5]
// bucketArgs. Returns "epoch\nack" or nil. A room of the old layout answers from
// its bucket of now, as before.
var recallScript = rueidis.NewLuaScript(metaLua + `
local c = bk(2)
local m, v = readMeta({ARGV[1]})
if not m.s then return redis.call('HGET', KEYS[6], ARGV[1]) end
local ack = nil
if m.a and young(m.b, c) then ack = ackOf(v[#META + 1], m.e) end
if not ack and young(m.p, c) then ack = ackOf(redis.call('HGET', ackBase .. num(m.p), ARGV[1]), m.e) end
if ack then return m.e .. '\n' .. ack end
return nil
`)

// Recall implements Timeline: one script reading the meta hash (and the
// previous bucket's hash when the key is not in it).
func (t *Redis) Recall(ctx context.Context, room, key string) (Ack, bool, error) {
	now := t.now()
	var a Ack
	var ok bool
	err := t.cfg.Call.Do(ctx, "timeline_recall", 1, func(ctx context.Context) error {
		d, err := recallScript.Exec(ctx, t.c, t.keys(room, now), append([]string{ackField(key)}, bucketArgs(now)...)).ToString()
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
