package placement

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"roomcast/internal/rediscall"
)

// Agent keeps a node's part of the placement in Redis: once a Period it
// declares the node (URL, weight, the hot-room candidates it sees) and
// reads the table, in one script call. The node holding the lock (the
// leader; any node may be elected, and a lapsed lock elects another)
// also recomputes the table and writes it with the next epoch when it
// changes. The table is only advice: every node serves every room, so a
// stale or missing table never makes a room unreachable.
//
// Keys (one hash tag, so one Cluster slot):
//
//	PREFIX{placement}:nodes  hash node id → "ms|{url,weight,rooms}"
//	PREFIX{placement}:lock   the leader's id, expiring
//	PREFIX{placement}:table  the Table as JSON
type Agent struct {
	c     rueidis.Client
	cfg   AgentConfig
	keys  []string
	table atomic.Pointer[Table]
	raw   string // the table JSON last parsed; owned by run

	epoch, hot, leader prometheus.Gauge
	moves              prometheus.Counter

	stop chan struct{}
	done chan struct{}
}

// AgentConfig configures an Agent. Zero values mean the defaults.
type AgentConfig struct {
	Prefix    string  // key prefix; default "rc:"
	URL       string  // this node's public base URL (--advertise); "" = reports loads but carries no hot room
	Weight    float64 // relative capacity (--weight); default 1
	Placement Config
	Period    time.Duration // default 1s
	NodeTTL   time.Duration // a node silent this long leaves the table; default 5 × Period
	// MaxMoves bounds the rooms moved between live nodes per epoch;
	// default a tenth of the hot rooms (at least one).
	MaxMoves int
	// Loads returns the online count of the rooms this node serves.
	Loads func() map[string]int
	// Call runs one Redis round trip (metrics, fail-fast gate); nil: direct.
	Call rediscall.Func
	Log  *slog.Logger
	Reg  prometheus.Registerer // nil: no metrics
}

// maxReported bounds the rooms one node reports per period.
const maxReported = 64

// tickScript declares the node and reads the table; the leader also gets
// every node's declaration. KEYS nodes, lock, table; ARGV id, declaration,
// lock ttl ms, nodes key ttl ms. Returns {leader, table, now, [nodes]}.
var tickScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local cur = redis.call('GET', KEYS[2])
local leader = 0
if not cur then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3]); leader = 1
elseif cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[3]); leader = 1
end
local tbl = redis.call('GET', KEYS[3]) or ''
if leader == 1 then return {1, tbl, now, redis.call('HGETALL', KEYS[1])} end
return {0, tbl, now}
`)

// writeScript writes the table if the caller still leads, and forgets
// nodes gone silent. KEYS nodes, lock, table; ARGV id, table, ttl ms, then
// the ids to forget.
var writeScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
return 1
`)

// declaration is what a node writes about itself.
type declaration struct {
	URL    string         `json:"url,omitempty"`
	Weight float64        `json:"weight,omitempty"`
	Rooms  map[string]int `json:"rooms,omitempty"`
}

// NewAgent starts the agent's loop; Close stops it.
func NewAgent(c rueidis.Client, id string, cfg AgentConfig) *Agent {
	if cfg.Prefix == "" {
		cfg.Prefix = "rc:"
	}
	if cfg.Weight <= 0 {
		cfg.Weight = 1
	}
	if cfg.Period <= 0 {
		cfg.Period = time.Second
	}
	if cfg.NodeTTL <= 0 {
		cfg.NodeTTL = 5 * cfg.Period
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Placement = cfg.Placement.withDefaults()
	p := cfg.Prefix + "{placement}:"
	a := &Agent{c: c, cfg: cfg, keys: []string{p + "nodes", p + "lock", p + "table"},
		epoch:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_placement_epoch", Help: "Epoch of the placement table this node last read."}),
		hot:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_placement_hot_rooms", Help: "Rooms placed by the table this node last read."}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_placement_leader", Help: "1 while this node computes the placement table."}),
		moves: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_placement_moves_total",
			Help: "Hot rooms this node (as leader) moved between live nodes."}),
		stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Reg != nil {
		cfg.Reg.MustRegister(a.epoch, a.hot, a.leader, a.moves)
	}
	go a.run(id)
	return a
}

// Table returns the table last read (nil before the first read).
func (a *Agent) Table() *Table { return a.table.Load() }

// URL is this node's advertised URL ("" when it carries no hot room).
func (a *Agent) URL() string { return a.cfg.URL }

// Close stops the loop.
func (a *Agent) Close() error {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
	return nil
}

func (a *Agent) run(id string) {
	defer close(a.done)
	t := time.NewTicker(a.cfg.Period)
	defer t.Stop()
	for {
		if err := a.tick(id); err != nil {
			a.cfg.Log.Debug("placement: tick", "err", err)
		}
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
	}
}

// tick is one period: declare, read, and (leader) recompute.
func (a *Agent) tick(id string) error {
	ctx := context.Background()
	decl, err := json.Marshal(declaration{URL: a.cfg.URL, Weight: a.cfg.Weight, Rooms: a.candidates()})
	if err != nil {
		return err
	}
	ttl := strconv.FormatInt(int64(3*a.cfg.Period/time.Millisecond), 10)
	var reply []rueidis.RedisMessage
	err = a.cfg.Call.Do(ctx, "placement", 1, func(ctx context.Context) error {
		var e error
		reply, e = tickScript.Exec(ctx, a.c, a.keys, []string{id, string(decl), ttl, "60000"}).ToArray()
		return e
	})
	if err != nil {
		return fmt.Errorf("placement tick: %w", err)
	}
	if len(reply) < 3 {
		return fmt.Errorf("placement tick: %d replies", len(reply))
	}
	leader, _ := reply[0].AsInt64()
	raw, _ := reply[1].ToString()
	a.read(raw)
	a.leader.Set(float64(leader))
	if leader != 1 || len(reply) < 4 {
		return nil
	}
	now, _ := reply[2].AsInt64()
	nodes, _ := reply[3].AsStrMap()
	return a.lead(ctx, id, now, nodes)
}

// candidates are this node's rooms that may be hot: online at least half
// the threshold (hysteresis keeps placed rooms until then), hottest first.
func (a *Agent) candidates() map[string]int {
	if a.cfg.Loads == nil || a.cfg.Placement.Hot <= 0 {
		return nil
	}
	var rs []Room
	for id, l := range a.cfg.Loads() {
		if 2*l >= a.cfg.Placement.Hot {
			rs = append(rs, Room{ID: id, Load: l})
		}
	}
	slices.SortFunc(rs, func(x, y Room) int { return cmp.Compare(y.Load, x.Load) })
	out := make(map[string]int, min(len(rs), maxReported))
	for _, r := range rs[:min(len(rs), maxReported)] {
		out[r.ID] = r.Load
	}
	return out
}

// read adopts the table JSON if it changed.
func (a *Agent) read(raw string) {
	if raw == a.raw {
		return
	}
	t := &Table{}
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), t); err != nil {
			a.cfg.Log.Warn("placement: unreadable table", "err", err)
			return
		}
	}
	a.raw = raw
	a.table.Store(t)
	a.epoch.Set(float64(t.Epoch))
	a.hot.Set(float64(len(t.Rooms)))
}

// lead recomputes the table from every node's declaration and writes it
// when it changed.
func (a *Agent) lead(ctx context.Context, id string, now int64, declared map[string]string) error {
	var members []Node
	var forget []string
	loads := map[string]int{}
	for nid, v := range declared {
		ms, js, ok := strings.Cut(v, "|")
		at, err := strconv.ParseInt(ms, 10, 64)
		var d declaration
		if !ok || err != nil || json.Unmarshal([]byte(js), &d) != nil || now-at > a.cfg.NodeTTL.Milliseconds() {
			forget = append(forget, nid)
			continue
		}
		if d.URL != "" && d.Weight > 0 {
			members = append(members, Node{URL: d.URL, Weight: d.Weight})
		}
		for room, l := range d.Rooms { // every node sees the room's total: take the largest report
			loads[room] = max(loads[room], l)
		}
	}
	slices.SortFunc(members, func(x, y Node) int { return cmp.Compare(x.URL, y.URL) })
	members = slices.CompactFunc(members, func(x, y Node) bool { return x.URL == y.URL })
	prev := a.table.Load()
	if prev == nil {
		prev = &Table{}
	}
	hot := HotSet(a.cfg.Placement, loads, prev.Rooms)
	target := Assign(a.cfg.Placement, hot, members)
	alive := make(map[string]bool, len(members))
	for _, n := range members {
		alive[n.URL] = true
	}
	maxMoves := a.cfg.MaxMoves
	if maxMoves <= 0 {
		maxMoves = max(1, len(hot)/10)
	}
	next, moved := Step(prev.Rooms, target, loads, alive, maxMoves)
	if Equal(next, prev.Rooms) && slices.Equal(members, prev.Nodes) && len(forget) == 0 {
		return nil
	}
	t := &Table{Epoch: prev.Epoch + 1, Nodes: members, Rooms: next, Loads: make(map[string]int, len(next))}
	for room := range next {
		t.Loads[room] = loads[room]
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	args := append([]string{id, string(raw), "86400000"}, forget...)
	var wrote int64
	err = a.cfg.Call.Do(ctx, "placement", 1, func(ctx context.Context) error {
		var e error
		wrote, e = writeScript.Exec(ctx, a.c, a.keys, args).AsInt64()
		return e
	})
	if err != nil {
		return fmt.Errorf("placement write: %w", err)
	}
	if wrote == 1 {
		a.moves.Add(float64(moved))
		a.read(string(raw))
		a.cfg.Log.Info("placement: new table", "epoch", t.Epoch, "nodes", len(members), "hot_rooms", len(next), "moved", moved)
	}
	return nil
}
