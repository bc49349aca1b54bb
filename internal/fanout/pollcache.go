package fanout

import (
	"sync/atomic"
	"time"

	"roomcast/internal/message"
)

// Page is one poll answer shared by every poller asking the same room the
// same question (cursor and limit) while the room's state is unchanged
// (issue 14: a hot room's polls are mostly repeats). The transport encodes
// it once into JSON and serves the same bytes to all of them.
type Page struct {
	// JSON is the transport's encoding of the answer, stored by the first
	// poller that encodes it; nil until then.
	JSON atomic.Pointer[[]byte]
}

// pageKey is the question.
type pageKey struct {
	cursor  uint64
	limit   int
	foreign bool // the cursor is of another epoch (it resets)
}

// pageGen is the room state an answer depends on; any change starts a new
// generation (and an empty cache). tick bounds the age of an answer to one
// tick even when nothing else moves (staleness resets depend on the time).
type pageGen struct {
	epoch       string
	head, first uint64
	online      int
	likes       int64
	tick        int64
}

// pageCache holds a room's shared answers of the current generation.
// Guarded by the hub's mu.
type pageCache struct {
	gen   pageGen
	pages map[pageKey]cachedPage
}

type cachedPage struct {
	msgs   []*message.Message // shared, read-only
	cursor uint64
	reset  bool
	page   *Page
}

// maxPages bounds one room's cache: distinct questions per generation.
const maxPages = 256

// genLocked is the hub's current generation.
func (h *Hub) genLocked(now time.Time) pageGen {
	return pageGen{epoch: h.epoch, head: h.win.head, first: h.win.first(), online: h.online, likes: h.likes,
		tick: now.UnixNano() / int64(h.node.cfg.Tick)}
}

// cachedLocked returns the shared answer to q, if there is one.
func (h *Hub) cachedLocked(gen pageGen, k pageKey) (PollAnswer, bool) {
	if h.pages.gen != gen {
		return PollAnswer{}, false
	}
	c, ok := h.pages.pages[k]
	if !ok {
		return PollAnswer{}, false
	}
	return PollAnswer{Messages: c.msgs, Cursor: c.cursor, Epoch: h.epoch, Reset: c.reset, Online: h.online, Likes: h.likes, Page: c.page}, true
}

// storeLocked shares a's answer to k for the rest of generation gen.
func (h *Hub) storeLocked(gen pageGen, k pageKey, a *PollAnswer) {
	if h.pages.gen != gen || h.pages.pages == nil {
		h.pages.gen, h.pages.pages = gen, make(map[pageKey]cachedPage, 16)
	}
	if len(h.pages.pages) >= maxPages {
		return
	}
	a.Page = &Page{}
	h.pages.pages[k] = cachedPage{msgs: a.Messages, cursor: a.Cursor, reset: a.Reset, page: a.Page}
}
