package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"roomcast/internal/rediscall"
)

// Redis is the Presence of a cluster (issue 5, R4). Sessions stay local to
// the node that holds them: Join, Touch and Leave change only this node's
// memory, so a poll costs no Redis command. Once a second (Flush) the node
// writes, per room, one Lua script that records its session count and a
// heartbeat, its top audience, the watch time of the sessions that left,
// and returns the room's total across live nodes. A node that stops flushing
// for NodeTTL (killed, partitioned) drops out of every count.
//
// Keys of a room share the hash tag {room}:
//
//	PREFIX{room}:pn  hash node → session count
//	PREFIX{room}:ph  zset node → last heartbeat (Redis time, ms)
//	PREFIX{room}:pa  hash node → that node's top members (JSON)
//	PREFIX{room}:pw  zset user → watch seconds
//	PREFIX{room}:pu  hash user → name
//	PREFIX{room}:ps  hash peak, secs (total watch seconds)
type Redis struct {
	c   rueidis.Client
	cfg RedisConfig
	local[*redisRoom]
	totals map[string]total // room totals as last read; guarded by mu
	run    string           // this process's prefix of watch batch ids
	batch  uint64           // watch batches numbered so far; guarded by mu

	stop chan struct{}
	done chan struct{}
}

var _ Presence = (*Redis)(nil)

// RedisConfig configures a Redis Presence. Zero values mean the defaults.
type RedisConfig struct {
	Prefix   string         // key prefix; default "rc:"
	NodeID   string         // this node's id; default random
	TTL      time.Duration  // a poller not seen for this long has left; default 10s
	NodeTTL  time.Duration  // a node silent for this long is dead; default 3s
	Flush    time.Duration  // how often the node writes its presence; default 1s
	Audience int            // members each node publishes per room; default 200
	Call     rediscall.Func // nil: commands run directly
	Log      *slog.Logger   // default slog.Default()
}

type redisRoom struct {
	sessions sessions
	pending  map[string]*Watch // watch seconds not yet in a batch, by user
	unacked  *watchBatch       // watch seconds sent but not known written
	written  int               // the count this node last wrote
	present  bool              // this node has an entry in Redis
	dirty    bool              // sessions changed since the audience was written
}

func (r *redisRoom) table() sessions { return r.sessions }

// joined and left change only this node's memory: Join, Touch and Leave
// send nothing to Redis; the flush writes the counts, the audience and the
// watch time.
func (r *redisRoom) joined(changed bool) { r.dirty = r.dirty || changed }

func (r *redisRoom) left(m Member, secs int64) {
	r.dirty = true
	if m.UserID != "" {
		addWatch(r.pending, m, secs)
	}
}

// watchBatch is watch time on its way to Redis. Until a flush confirms it,
// every flush sends it again under the same id: a round trip that timed out
// may still have been applied, and the flush script adds a batch's seconds
// only once (it keeps each node's last applied id per room).
type watchBatch struct {
	id string
	w  map[string]*Watch
}

func newRedisRoom() *redisRoom {
	return &redisRoom{sessions: sessions{}, pending: map[string]*Watch{}}
}

type total struct {
	n  int
	at time.Time
}

// keyTTL keeps a room's presence and watch statistics this long after its
// last write.
const keyTTL = 24 * time.Hour

// NewRedis returns a Presence on c and starts its flusher. It does not own c.
func NewRedis(c rueidis.Client, cfg RedisConfig) *Redis {
	if cfg.Prefix == "" {
		cfg.Prefix = "rc:"
	}
	if cfg.NodeID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		cfg.NodeID = hex.EncodeToString(b[:])
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.NodeTTL <= 0 {
		cfg.NodeTTL = 3 * time.Second
	}
	if cfg.Flush <= 0 {
		cfg.Flush = time.Second
	}
	if cfg.Audience <= 0 {
		cfg.Audience = 200
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var run [6]byte
	_, _ = rand.Read(run[:])
	p := &Redis{c: c, cfg: cfg, local: newLocal(newRedisRoom), totals: map[string]total{}, run: hex.EncodeToString(run[:]),
		stop: make(chan struct{}), done: make(chan struct{})}
	go every(p.cfg.Flush, p.stop, p.done, p.flushTick)
	return p
}

func (p *Redis) keys(room string) []string {
	b := p.cfg.Prefix + "{" + room + "}:p"
	return []string{b + "n", b + "h", b + "a", b + "w", b + "u", b + "s"}
}

// Count implements Presence: the room's total across live nodes as of the
// last flush or read (at most one read a second per room), corrected at once
// for this node's own joins and leaves since.
func (p *Redis) Count(ctx context.Context, room string) (int, error) {
	p.mu.Lock()
	t, ok := p.totals[room]
	mine, written := 0, 0
	if r := p.rooms[room]; r != nil {
		mine, written = len(r.sessions), r.written
	}
	p.mu.Unlock()
	if !ok || p.now().Sub(t.at) >= p.cfg.Flush {
		var n int64
		err := p.cfg.Call.Do(ctx, "presence_count", 1, func(ctx context.Context) error {
			var err error
			n, err = countScript.Exec(ctx, p.c, p.keys(room)[:2], []string{ms(p.cfg.NodeTTL)}).AsInt64()
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("presence: count %s: %w", room, err)
		}
		t = total{n: int(n), at: p.now()}
		p.mu.Lock()
		p.totals[room] = t
		if r := p.rooms[room]; r != nil {
			mine, written = len(r.sessions), r.written
		}
		p.mu.Unlock()
	}
	return max(0, t.n-written+mine), nil
}

// Audience implements Presence: the merged top members of every live node,
// one entry per user, highest level first.
func (p *Redis) Audience(ctx context.Context, room string, limit int) ([]Member, error) {
	k := p.keys(room)
	var blobs []rueidis.RedisMessage
	err := p.cfg.Call.Do(ctx, "presence_audience", 1, func(ctx context.Context) error {
		var err error
		blobs, err = audienceScript.Exec(ctx, p.c, []string{k[1], k[2]}, []string{ms(p.cfg.NodeTTL)}).ToArray()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("presence: audience %s: %w", room, err)
	}
	seen := map[string]bool{}
	var all []Member
	for _, b := range blobs {
		raw, err := b.AsBytes()
		if err != nil { // a node without members
			continue
		}
		var ms []Member
		if err := json.Unmarshal(raw, &ms); err != nil {
			p.cfg.Log.Warn("presence: bad audience entry", "room", room, "err", err)
			continue
		}
		for _, m := range ms {
			if !seen[m.UserID] {
				seen[m.UserID] = true
				all = append(all, m)
			}
		}
	}
	return top(all, limit), nil
}

// Stats implements Presence.
func (p *Redis) Stats(ctx context.Context, room string) (Stats, error) {
	k := p.keys(room)
	var arr []rueidis.RedisMessage
	err := p.cfg.Call.Do(ctx, "presence_stats", 1, func(ctx context.Context) error {
		var err error
		arr, err = statsScript.Exec(ctx, p.c, []string{k[0], k[1], k[3], k[4], k[5]}, []string{ms(p.cfg.NodeTTL)}).ToArray()
		return err
	})
	if err != nil {
		return Stats{}, fmt.Errorf("presence: stats %s: %w", room, err)
	}
	if len(arr) < 4 {
		return Stats{}, fmt.Errorf("presence: stats %s: short reply", room)
	}
	num := func(m rueidis.RedisMessage) int64 {
		if v, err := m.AsInt64(); err == nil {
			return v
		}
		s, _ := m.ToString()
		f, _ := strconv.ParseFloat(s, 64)
		return int64(f)
	}
	st := Stats{Online: int(num(arr[0])), Peak: int(num(arr[1])), Viewers: int(num(arr[2])), TotalSeconds: num(arr[3]), TopWatchers: []Watch{}}
	for i := 4; i+2 < len(arr); i += 3 {
		id, _ := arr[i].ToString()
		name, _ := arr[i+2].ToString()
		st.TopWatchers = append(st.TopWatchers, Watch{UserID: id, Name: name, Seconds: num(arr[i+1])})
	}
	sort.SliceStable(st.TopWatchers, func(i, j int) bool {
		a, b := st.TopWatchers[i], st.TopWatchers[j]
		if a.Seconds != b.Seconds {
			return a.Seconds > b.Seconds
		}
		return a.UserID < b.UserID
	})
	if st.Viewers > 0 {
		st.AvgSeconds = float64(st.TotalSeconds) / float64(st.Viewers)
	}
	return st, nil
}

// Close implements Presence: it stops the flusher and removes this node's
// sessions from every room (recording their watch time), so the counts drop
// at once on a graceful shutdown.
func (p *Redis) Close() error {
	select {
	case <-p.stop:
		return nil
	default:
		close(p.stop)
	}
	<-p.done
	now := p.now()
	p.mu.Lock()
	for _, r := range p.rooms {
		for sid := range r.sessions {
			leaveLocked(r, sid, now)
		}
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return p.flush(ctx)
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
