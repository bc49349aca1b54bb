// status.go: the once-a-second work of a node (online counts, like totals,
// window trimming, idle hubs) and the presence summaries the service takes.

package fanout

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"roomcast/internal/message"
	"roomcast/internal/presence"
)

// LikesTotal returns room's like total from the counter.
func (n *Node) LikesTotal(ctx context.Context, room string) (int64, error) {
	return n.deps.Likes.Total(ctx, room)
}

// Online returns the online count (across nodes) of every room this node
// serves, as last refreshed: the load a placement of hot rooms reads (R14).
func (n *Node) Online() map[string]int {
	hubs := n.hubList()
	out := make(map[string]int, len(hubs))
	for _, h := range hubs {
		h.mu.Lock()
		out[h.room] = h.online
		h.mu.Unlock()
	}
	return out
}

// second refreshes online counts and like totals (pushing changes), trims
// windows by age and drops idle hubs.
func (n *Node) second(now time.Time) {
	ctx := context.Background()
	n.inbox.sweep(now)
	n.mu.RLock()
	hubs := make([]*Hub, 0, len(n.hubs))
	for _, h := range n.hubs {
		if h.isReady() && h.loadErr == nil {
			hubs = append(hubs, h)
		}
	}
	n.mu.RUnlock()
	var wg sync.WaitGroup
	for _, h := range hubs {
		online, err := n.deps.Presence.Count(ctx, h.room)
		if err != nil {
			online = -1
		}
		total, err := n.deps.Likes.Total(ctx, h.room)
		if err != nil {
			total = -1
		}
		h.mu.Lock()
		h.win.dropOlder(now.Add(-n.cfg.WindowAge).UnixMilli())
		// Changed counts go out with the room's next batch, in the same
		// write: a count of its own would cost every viewer one more write a
		// second (a fifth more in a big room at 20 msg/s). In a room quiet
		// for the last second they go alone.
		if online >= 0 && online != h.online {
			h.online = online
			h.queueCountLocked(newCount(h.room, "online", int64(online), h.cursor, h.epoch))
		}
		if total >= 0 && total != h.likes {
			h.likes = total
			h.queueCountLocked(newCount(h.room, "likes", total, h.cursor, h.epoch))
		}
		stale := h.idleCountsLocked()
		if len(h.waiting) > 0 {
			h.markDirtyLocked() // admits or resets waiters past their deadline
		}
		idle := len(h.conns) == 0 && len(h.waiting) == 0 && now.Sub(h.lastUse) > n.cfg.IdleHub
		if idle {
			h.closed = true
		}
		sinks := h.sinks
		if stale != nil && h.connsChanged {
			sinks = make([]Sink, 0, len(h.conns))
			for c := range h.conns {
				sinks = append(sinks, c.Sink)
			}
		}
		h.mu.Unlock()
		if stale != nil {
			n.submit(stale, sinks, &wg)
			wg.Wait() // sinks may be h.sinks, which the next tick rebuilds
		}
		if idle {
			n.mu.Lock()
			if n.hubs[h.room] == h {
				delete(n.hubs, h.room)
				if h.unsub != nil {
					h.unsub()
				}
			}
			n.deps.Metrics.RoomsActive.Set(float64(len(n.hubs)))
			n.mu.Unlock()
		}
	}
}

func appendCount(b []byte, typ, room, field string, v int64) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","room":`...)
	b = message.AppendString(b, room)
	b = append(b, `,"`...)
	b = append(b, field...)
	b = append(b, `":`...)
	b = strconv.AppendInt(b, v, 10)
	return append(b, '}')
}

// RoomOnline returns room's online count as this node last read it (refreshed
// once a second while the room has a hub here), so answering a client's
// heartbeat costs no presence read; ok is false when the room has no hub.
func (n *Node) RoomOnline(room string) (count int, ok bool) {
	n.mu.RLock()
	h := n.hubs[room]
	n.mu.RUnlock()
	if h == nil || !h.isReady() || h.loadErr != nil {
		return 0, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online, true
}

// TakePresence returns, and resets, each room's arrivals and departures on
// this node since the last call (rooms without any are left out). The
// service calls it on its own ticker to write enter/leave messages, so no
// store write runs on the node's tick.
func (n *Node) TakePresence() []presence.Summary {
	hubs := n.hubList()
	var out []presence.Summary
	for _, h := range hubs {
		h.mu.Lock()
		if h.joinN > 0 || h.leaveN > 0 {
			out = append(out, presence.Summary{Room: h.room, Named: h.joins, Joined: h.joinN, Left: h.leaveN})
			h.joins, h.joinN, h.leaveN = nil, 0, 0
		}
		h.mu.Unlock()
	}
	return out
}

// hubList is a snapshot of the node's hubs.
func (n *Node) hubList() []*Hub {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return slices.Collect(maps.Values(n.hubs))
}
