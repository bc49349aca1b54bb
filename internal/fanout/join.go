// join.go: a connection joining a room: its first batch (what it missed,
// or the warm start) and, when its cursor is ahead, the wait for the hub.

package fanout

import (
	"time"

	"roomcast/internal/message"
)

// attach adds c, first queueing what it missed since cursor (or the warm
// start when it has none) so no message is lost or doubled between the
// backlog and the next tick's batch.
func (h *Hub) attach(c *Conn, cursor uint64, hasCursor bool, older []*message.Message, ahead bool) error {
	now := h.node.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errHubClosed
	}
	h.lastUse = now
	c.hub = h
	// In the user index before the first batch can reach the client: a
	// user-scoped message it causes once it sees that batch finds it.
	h.node.addUserConn(c, c.Member.UserID)
	// A cursor past what this hub has dispatched is a client that saw more
	// elsewhere (another node, before a failover): it joins once the hub has
	// caught up to it, so it gets neither a duplicate nor a gap.
	if hasCursor && !h.foreignLocked(cursor, c.Epoch, c.HasEpoch) && cursor > h.admitCursorLocked() && (cursor <= h.win.head || ahead) {
		h.waiting = append(h.waiting, waiter{c: c, cursor: cursor, deadline: now.Add(waitLimit)})
		h.markDirtyLocked()
		return nil
	}
	if err := h.joinLocked(c, cursor, hasCursor, older, now); err != nil {
		h.node.removeUserConn(c, c.Member.UserID)
		return err
	}
	return nil
}

// waitLimit bounds how long a connection waits for its hub to catch up with
// its cursor before it is reset instead.
const waitLimit = 5 * time.Second

// waiter is a connection whose cursor is ahead of the hub's dispatch.
type waiter struct {
	c        *Conn
	cursor   uint64
	deadline time.Time
}

// joinLocked sends c its first batch (what it missed since cursor, or the
// warm start) and the current counts, and adds it to the room.
func (h *Hub) joinLocked(c *Conn, cursor uint64, hasCursor bool, older []*message.Message, now time.Time) error {
	foreign := h.foreignLocked(cursor, c.Epoch, c.HasEpoch)
	// upTo is what the connection's shared batches have reached: the hub's
	// cursor, or in a spread room its write group's (spread.go).
	upTo := h.cursor
	if h.spread != nil {
		c.group = h.spread.pick(cursor, hasCursor && !foreign)
		upTo = h.spread.groups[c.group].cursor
	}
	msgs, reset := h.collectLocked(cursor, hasCursor, foreign, upTo, older, now)
	if h.node.cfg.Budget > 0 {
		msgs, _ = selectTop(msgs, max(h.node.cfg.Budget*warmSeconds(h.node.cfg.WarmWindow), 1), !hasCursor || reset)
	} else if !hasCursor || reset {
		msgs = msgs[max(0, len(msgs)-maxWarm):]
	}
	p := newBatch(h.room, msgs, upTo, h.epoch, reset)
	p.content.Move = c.Move // the first batch tells a client of a placed room where to go next time
	if err := c.Sink.Send(p); err != nil {
		return err
	}
	h.conns[c] = struct{}{}
	h.nconns.Store(int32(len(h.conns)))
	h.connsChanged = true
	if h.spread != nil {
		h.spread.groups[c.group].n++
	}
	h.noteJoinLocked(c.Member)
	// The current counts at once; later ones are pushed when they change.
	_ = c.Sink.Send(newCount(h.room, "online", int64(h.online), upTo, h.epoch))
	_ = c.Sink.Send(newCount(h.room, "likes", h.likes, upTo, h.epoch))
	return nil
}

// admitWaitingLocked joins the waiting connections the hub has caught up
// with (after this tick's dispatch), and resets those that waited too long.
func (h *Hub) admitWaitingLocked(now time.Time) {
	if len(h.waiting) == 0 {
		return
	}
	keep := h.waiting[:0]
	for _, w := range h.waiting {
		switch {
		case w.cursor <= h.admitCursorLocked() || h.foreignLocked(w.cursor, w.c.Epoch, w.c.HasEpoch):
			if err := h.joinLocked(w.c, w.cursor, true, nil, now); err != nil {
				w.c.Sink.Close(1011, "attach failed")
			}
		case now.After(w.deadline):
			if err := h.joinLocked(w.c, h.win.head+1, true, nil, now); err != nil { // past the head: a reset
				w.c.Sink.Close(1011, "attach failed")
			}
		default:
			keep = append(keep, w)
		}
	}
	clear(h.waiting[len(keep):])
	h.waiting = keep
}

// maxWarm caps the messages a new viewer receives at once in unlimited mode.
const maxWarm = 200

func warmSeconds(d time.Duration) int { return max(1, int((d+time.Second-1)/time.Second)) }

// foreignLocked reports whether a client's cursor belongs to another epoch
// than the hub's: its number says nothing here, so it must start over.
// Cursor 0 is the start of every epoch.
func (h *Hub) foreignLocked(cursor uint64, epoch string, hasEpoch bool) bool {
	return hasEpoch && cursor > 0 && epoch != h.epoch
}

// collectLocked returns the messages a client at cursor has missed, up to
// upTo, and whether it must reset instead (cursor from another epoch, older
// than the retained window, or staler than the staleness limit). older holds
// messages read from the timeline just before the window, if any. Without a
// cursor (or on reset) it returns the warm start: the last WarmWindow.
func (h *Hub) collectLocked(cursor uint64, hasCursor, foreign bool, upTo uint64, older []*message.Message, now time.Time) ([]*message.Message, bool) {
	cfg := h.node.cfg
	reset := false
	if hasCursor {
		switch {
		case foreign, cursor > h.win.head:
			reset = true
		case cursor >= upTo:
			return nil, false
		default:
			var firstMissed *message.Message
			if cursor+1 >= h.win.first() {
				firstMissed = h.win.at(cursor + 1)
			} else if len(older) > 0 && older[0].Seq == cursor+1 {
				firstMissed = older[0]
			}
			if firstMissed == nil || (cfg.Staleness > 0 && firstMissed.TS < now.Add(-cfg.Staleness).UnixMilli()) {
				reset = true
			}
			// The timeline read back is bounded: if it does not reach the
			// window, resuming would leave a gap, so reset instead.
			if len(older) > 0 && older[len(older)-1].Seq+1 < h.win.first() {
				reset = true
			}
		}
		if !reset {
			out := make([]*message.Message, 0, min(int(upTo-cursor), 1024))
			for _, m := range older {
				if m.Seq > cursor && m.Seq < h.win.first() {
					out = append(out, m)
				}
			}
			return h.win.appendRange(out, cursor, upTo), false
		}
	}
	from := h.win.sinceTS(now.Add(-cfg.WarmWindow).UnixMilli(), upTo)
	return h.win.appendRange(nil, from, upTo), reset
}
