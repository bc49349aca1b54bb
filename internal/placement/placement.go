// Package placement decides which nodes carry the hottest rooms (R14).
//
// A room whose load (its online count) crosses the hot threshold is placed
// on a set of nodes chosen by weighted rendezvous hashing with bounded load:
// every node scores every room by a hash of (room, node) scaled by the
// node's weight, a room goes to its best-scoring nodes, and a node already
// carrying more than Balance × its weighted share of the hot load is skipped
// (the room overflows to its next node). Cold rooms are not placed at all:
// they stay wherever their viewers connect.
//
// The functions here are pure and deterministic for a given input, so every
// node that reads the same table computes the same answers. The table lives
// in Redis (Agent), with an epoch, written by one elected node and changed
// gradually (Step): a few rooms move per epoch, except rooms whose nodes
// have left, which move at once.
package placement

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
)

// Node is a node that may carry hot rooms: its public base URL
// (--advertise) and its relative capacity (--weight).
type Node struct {
	URL    string  `json:"url"`
	Weight float64 `json:"weight"`
}

// Room is a room's load: its online count.
type Room struct {
	ID   string `json:"id"`
	Load int    `json:"load"`
}

// Table is the placement the cluster agrees on: the hot rooms and the nodes
// that carry each, best first. Epoch grows by one with every change.
type Table struct {
	Epoch uint64              `json:"epoch"`
	Nodes []Node              `json:"nodes"`
	Rooms map[string][]string `json:"rooms"`
	Loads map[string]int      `json:"loads,omitempty"`
}

// Config tunes the placement.
type Config struct {
	// Hot is the load from which a room is placed (--hot-room); a placed
	// room stays placed until its load falls under Hot/2 (hysteresis).
	// 0 disables placement.
	Hot int
	// Balance bounds each node's share of the hot load: at most Balance ×
	// the weighted average (--placement-balance, > 1; default 1.25).
	Balance float64
	// MaxRooms bounds the table (the hottest first); default 1024.
	MaxRooms int
}

// DefaultBalance is --placement-balance's default.
const DefaultBalance = 1.25

func (c Config) withDefaults() Config {
	if c.Balance <= 1 {
		c.Balance = DefaultBalance
	}
	if c.MaxRooms <= 0 {
		c.MaxRooms = 1024
	}
	return c
}

// score is node n's weighted rendezvous score for key: -w/ln(u) with u a
// uniform hash in (0,1). The highest score wins; a node's chance to win is
// proportional to its weight, and adding or removing a node only changes
// the winner of the keys that node wins or held.
func score(key, node string, w float64) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(node))
	x := mix(h.Sum64())
	u := (float64(x>>11) + 0.5) / (1 << 53)
	return -w / math.Log(u)
}

// mix is splitmix64's finalizer: FNV's low bits are weak on short keys.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Rank orders nodes by their score for key, best first (ties by URL).
func Rank(key string, nodes []Node) []Node {
	type scored struct {
		n Node
		s float64
	}
	ss := make([]scored, 0, len(nodes))
	for _, n := range nodes {
		if n.Weight > 0 {
			ss = append(ss, scored{n, score(key, n.URL, n.Weight)})
		}
	}
	slices.SortFunc(ss, func(a, b scored) int {
		if c := cmp.Compare(b.s, a.s); c != 0 {
			return c
		}
		return cmp.Compare(a.n.URL, b.n.URL)
	})
	out := make([]Node, len(ss))
	for i, s := range ss {
		out[i] = s.n
	}
	return out
}

// HotSet picks the rooms to place from their loads: a room at or over Hot,
// or one already placed (prev) still at or over Hot/2; the hottest
// MaxRooms, ordered by load (then ID).
func HotSet(cfg Config, loads map[string]int, prev map[string][]string) []Room {
	cfg = cfg.withDefaults()
	if cfg.Hot <= 0 {
		return nil
	}
	var out []Room
	for id, l := range loads {
		_, was := prev[id]
		if l >= cfg.Hot || (was && 2*l >= cfg.Hot) {
			out = append(out, Room{ID: id, Load: l})
		}
	}
	slices.SortFunc(out, func(a, b Room) int {
		if c := cmp.Compare(b.Load, a.Load); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	if len(out) > cfg.MaxRooms {
		out = out[:cfg.MaxRooms]
	}
	return out
}

// Assign places rooms on nodes: each room on k of its rendezvous-ranked
// nodes (k = load/Hot rounded up, at least enough that one node's share
// fits under the bound, at most every node), skipping any node whose hot
// load would exceed Balance × its weighted share of the total. Rooms are
// placed hottest first. The result is deterministic for its inputs.
func Assign(cfg Config, rooms []Room, nodes []Node) map[string][]string {
	cfg = cfg.withDefaults()
	out := make(map[string][]string, len(rooms))
	var live []Node
	var wsum float64
	for _, n := range nodes {
		if n.Weight > 0 {
			live = append(live, n)
			wsum += n.Weight
		}
	}
	if len(live) == 0 || cfg.Hot <= 0 {
		return out
	}
	total := 0.0
	for _, r := range rooms {
		total += float64(r.Load)
	}
	perWeight := total / wsum // the weighted average: load per unit of weight
	wmin := slices.MinFunc(live, func(a, b Node) int { return cmp.Compare(a.Weight, b.Weight) }).Weight
	wavg := wsum / float64(len(live))
	rooms = slices.Clone(rooms)
	slices.SortFunc(rooms, func(a, b Room) int { // hottest first: big shares are placed while there is room
		if c := cmp.Compare(b.Load, a.Load); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	used := make(map[string]float64, len(live))
	for _, r := range rooms {
		load := float64(max(r.Load, 1))
		k := int(math.Ceil(load / float64(cfg.Hot)))
		// Small enough shares always fit somewhere: while nodes are below the
		// average, a share ≤ (Balance-1) × the smallest node's average fits.
		if room := (cfg.Balance - 1) * perWeight * wmin; room > 0 {
			k = max(k, int(math.Ceil(load/room)))
		}
		k = min(max(k, 1), len(live))
		ranked := Rank(r.ID, live)
		chosen := make([]string, 0, k)
		taken := make(map[string]bool, k)
		for len(chosen) < k {
			best, bestFill := -1, math.Inf(1)
			for i, n := range ranked {
				if taken[n.URL] {
					continue
				}
				share := load / float64(k) * n.Weight / wavg
				capacity := cfg.Balance * perWeight * n.Weight
				if used[n.URL]+share <= capacity {
					best = i
					break
				}
				if fill := (used[n.URL] + share) / capacity; fill < bestFill { // overflow: the least filled
					best, bestFill = i, fill
				}
			}
			n := ranked[best]
			taken[n.URL] = true
			used[n.URL] += load / float64(k) * n.Weight / wavg
			chosen = append(chosen, n.URL)
		}
		out[r.ID] = chosen
	}
	return out
}

// Step moves cur towards target gradually: rooms that became hot or cold,
// and rooms whose nodes left (not in alive), take target's placement at
// once; of the other rooms whose placement differs, at most maxMoves (the
// hottest first, then by ID) do. It returns the new placement and how many
// rooms moved between live nodes.
func Step(cur, target map[string][]string, loads map[string]int, alive map[string]bool, maxMoves int) (map[string][]string, int) {
	out := make(map[string][]string, len(target))
	var differ []string
	for id, t := range target {
		c, ok := cur[id]
		switch {
		case !ok || !allAlive(c, alive):
			out[id] = t
		case slices.Equal(c, t):
			out[id] = c
		default:
			out[id] = c
			differ = append(differ, id)
		}
	}
	slices.SortFunc(differ, func(a, b string) int {
		if c := cmp.Compare(loads[b], loads[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	moved := min(len(differ), max(maxMoves, 0))
	for _, id := range differ[:moved] {
		out[id] = target[id]
	}
	return out, moved
}

func allAlive(urls []string, alive map[string]bool) bool {
	for _, u := range urls {
		if !alive[u] {
			return false
		}
	}
	return len(urls) > 0
}

// Equal reports whether two placements are the same.
func Equal(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for id, x := range a {
		if y, ok := b[id]; !ok || !slices.Equal(x, y) {
			return false
		}
	}
	return true
}

// For orders a room's nodes for one client (key: its user, device or
// address), so a hot room's clients spread over its nodes in proportion to
// their weights. nil when the room is not placed.
func (t *Table) For(room, key string) []string {
	if t == nil {
		return nil
	}
	urls := t.Rooms[room]
	if len(urls) <= 1 {
		return urls
	}
	nodes := make([]Node, 0, len(urls))
	for _, u := range urls {
		w := 1.0
		for _, n := range t.Nodes {
			if n.URL == u {
				w = n.Weight
			}
		}
		nodes = append(nodes, Node{URL: u, Weight: w})
	}
	ranked := Rank(room+"\x00"+key, nodes)
	out := make([]string, len(ranked))
	for i, n := range ranked {
		out[i] = n.URL
	}
	return out
}

// Serves reports whether node url is one of room's placed nodes, or the
// room is not placed (every node serves a cold room).
func (t *Table) Serves(room, url string) bool {
	if t == nil {
		return true
	}
	urls, ok := t.Rooms[room]
	return !ok || slices.Contains(urls, url)
}
