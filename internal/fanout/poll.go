package fanout

import (
	"context"
	"errors"

	"roomcast/internal/message"
	"roomcast/internal/presence"
)

// PollQuery is one short-poll request (R7).
type PollQuery struct {
	Cursor    uint64
	HasCursor bool
	// Epoch is the timeline epoch of Cursor, if the client sent one
	// (HasEpoch); a cursor of another epoch resets (issue 8).
	Epoch    string
	HasEpoch bool
	Limit    int
	// Member identifies the poller for presence; an empty Session is not
	// counted online. With a UserID, the answer also holds that user's
	// user-scoped messages newer than UserCursor (a message ts in Unix ms;
	// without HasUserCursor, those of the warm window).
	Member        presence.Member
	UserCursor    int64
	HasUserCursor bool
}

// PollAnswer is what a poll returns.
type PollAnswer struct {
	Messages []*message.Message
	Cursor   uint64
	Epoch    string // the epoch Cursor counts in
	Reset    bool
	Online   int
	Likes    int64
	// UserMessages are the poller's user-scoped messages (seq 0), and
	// UserCursor what to send as user_cursor next time.
	UserMessages []*message.Message
	UserCursor   int64
	// Stale is set when the shared store is unreachable: the answer comes
	// from this node's window and may miss what other nodes accepted.
	Stale bool
	// Page, when set, is the answer shared with every poller of the room
	// that asked the same (cursor, limit) in the same room state: the
	// transport encodes it once (Page.JSON). Only the room part (Messages,
	// Cursor, Reset, Online, Likes) is shared.
	Page *Page
}

// pollKey marks the context of a poll being answered.
type pollKey struct{}

// InPoll reports whether ctx is a poll's (store clients count the commands
// a poll costs: a hot room's should cost none, R13).
func InPoll(ctx context.Context) bool { return ctx.Value(pollKey{}) != nil }

// Poll answers a poll from the room's hub (its window, the hot-room cache),
// so a hot room costs no store read per poll. With a render budget, more
// pending messages than Limit are chosen by priority and the cursor moves
// past everything considered; without one, polling pages in seq order.
func (n *Node) Poll(ctx context.Context, room string, q PollQuery) (PollAnswer, error) {
	ctx = context.WithValue(ctx, pollKey{}, true)
	joined := false
	if q.Member.Session != "" {
		var err error
		if joined, err = n.deps.Presence.Touch(ctx, room, q.Member); err != nil {
			n.log.Debug("fanout: presence touch", "room", room, "err", err)
		}
	}
	for {
		h, err := n.hub(ctx, room)
		if err != nil {
			return PollAnswer{}, err
		}
		older, err := n.olderThanWindow(ctx, h, q.Cursor, q.Epoch, q.HasCursor, q.HasEpoch)
		if err != nil {
			return PollAnswer{}, err
		}
		ahead, err := n.aheadOfWindow(ctx, h, q.Cursor, q.Epoch, q.HasCursor, q.HasEpoch)
		if err != nil {
			return PollAnswer{}, err
		}
		a, err := h.poll(q, older, joined, ahead)
		if errors.Is(err, errHubClosed) {
			continue
		}
		a.Stale = n.deps.Stale != nil && n.deps.Stale()
		if err == nil && q.Member.UserID != "" {
			after := q.UserCursor
			if !q.HasUserCursor {
				after = n.now().Add(-n.cfg.WarmWindow).UnixMilli()
			}
			a.UserMessages, a.UserCursor = n.inbox.since(q.Member.UserID, after), after
			if k := len(a.UserMessages); k > 0 {
				a.UserCursor = a.UserMessages[k-1].TS
			}
		}
		return a, err
	}
}

func (h *Hub) poll(q PollQuery, older []*message.Message, joined, ahead bool) (PollAnswer, error) {
	now := h.node.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return PollAnswer{}, errHubClosed
	}
	h.lastUse = now
	if joined {
		h.noteJoinLocked(q.Member)
	}
	upTo := h.win.head
	foreign := h.foreignLocked(q.Cursor, q.Epoch, q.HasEpoch)
	if q.HasCursor && !foreign && q.Cursor > upTo && ahead {
		// The client saw more on another node; this one has not caught up.
		return PollAnswer{Cursor: q.Cursor, Epoch: h.epoch, Online: h.online, Likes: h.likes}, nil
	}
	// A resuming poller's page is shared by everyone asking the same.
	shared := q.HasCursor && len(older) == 0
	gen, key := h.genLocked(now), pageKey{cursor: q.Cursor, limit: q.Limit, foreign: foreign}
	if shared {
		if a, ok := h.cachedLocked(gen, key); ok {
			return a, nil
		}
	}
	msgs, reset := h.collectLocked(q.Cursor, q.HasCursor, foreign, upTo, older, now)
	a := PollAnswer{Reset: reset, Epoch: h.epoch, Online: h.online, Likes: h.likes}
	fresh := !q.HasCursor || reset
	switch {
	case len(msgs) == 0:
		a.Cursor = upTo
		if !fresh {
			a.Cursor = q.Cursor
		}
	case h.node.cfg.Budget > 0 && fresh: // warm start: the best of the latest
		a.Messages, _ = selectTop(msgs, q.Limit, true)
		a.Cursor = upTo
	case h.node.cfg.Budget > 0:
		a.Messages, a.Cursor = SelectForPoll(msgs, q.Limit)
	case fresh: // warm start in seq mode: the latest Limit, cursor at the head
		a.Messages, a.Cursor = msgs[max(0, len(msgs)-q.Limit):], upTo
	default:
		a.Messages = msgs[:min(len(msgs), q.Limit)]
		a.Cursor = a.Messages[len(a.Messages)-1].Seq
	}
	if shared {
		h.storeLocked(gen, key, &a)
	}
	return a, nil
}
