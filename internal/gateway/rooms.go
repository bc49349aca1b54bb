package gateway

import (
	"net/http"
	"strconv"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/errs"
	"roomcast/internal/room"
)

func (g *Gateway) handleGuest(w http.ResponseWriter, r *http.Request) {
	if !g.cfg.Guest {
		writeErr(w, errs.New(errs.Forbidden, "guest access is disabled"))
		return
	}
	c := auth.GuestClaims()
	tok, err := g.d.Signer.Sign(c, 24*time.Hour)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"token": tok, "user": map[string]any{"id": c.Sub, "name": c.Name, "level": c.Level}})
}

func (g *Gateway) handleGifts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{"gifts": g.d.Service.Gifts().List()})
}

// roomView is a room with its live audience.
type roomView struct {
	room.Room
	Online   int   `json:"online"`
	UptimeMS int64 `json:"uptime_ms,omitempty"`
	// Thumbnail is the room's picture: a recent frame while live, the last
	// one as its cover after (issue 15).
	Thumbnail string `json:"thumbnail_url,omitempty"`
}

func (g *Gateway) view(r *http.Request, rm room.Room) roomView {
	v := roomView{Room: rm}
	if n, err := g.d.Presence.Count(r.Context(), rm.ID); err == nil {
		v.Online = n
	}
	if rm.Live && rm.LiveStartedAt != nil {
		v.UptimeMS = time.Since(*rm.LiveStartedAt).Milliseconds()
	}
	if g.d.Picture != nil {
		v.Thumbnail = g.d.Picture(rm.ID)
	}
	return v
}

func (g *Gateway) handleCreateRoom(w http.ResponseWriter, r *http.Request) {
	id, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	if id.Claims.Role != auth.RoleAnchor && !id.Admin {
		writeErr(w, errs.New(errs.Forbidden, "only anchors create rooms (token role \"anchor\")"))
		return
	}
	var body struct {
		Title  string `json:"title"`
		ID     string `json:"id"`
		Anchor string `json:"anchor"` // admins create rooms for an anchor (issue 15)
	}
	if err := decode(w, r, &body); err != nil {
		writeErr(w, err)
		return
	}
	anchor := id.Claims.Sub
	if body.Anchor != "" {
		if !id.Admin {
			writeErr(w, errs.New(errs.Forbidden, "only admins create rooms for another anchor"))
			return
		}
		if len(body.Anchor) > 128 {
			writeErr(w, errs.New(errs.BadRequest, "anchor must be 1–128 characters"))
			return
		}
		anchor = body.Anchor
	}
	rm, created, err := g.d.Rooms.Create(r.Context(), anchor, body.Title, body.ID)
	if err != nil {
		writeErr(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, rm)
}

func (g *Gateway) handleListRooms(w http.ResponseWriter, r *http.Request) {
	rooms, err := g.d.Rooms.List(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]roomView, 0, len(rooms))
	for _, rm := range rooms {
		out = append(out, g.view(r, rm))
	}
	writeJSON(w, 200, map[string]any{"rooms": out})
}

func (g *Gateway) handleGetRoom(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	// The anchor (or an admin) also sees the stream key.
	withKey := false
	if who, err := g.identity(r, false, false); err == nil && (who.Admin || who.Claims.Sub != "") {
		if rm, err := g.d.Rooms.Get(r.Context(), id, false); err == nil {
			withKey = who.Admin || rm.AnchorID == who.Claims.Sub
		}
	}
	rm, err := g.d.Rooms.Get(r.Context(), id, withKey)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, g.view(r, rm))
}

func (g *Gateway) handleResetKey(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	id := r.PathValue("id")
	if err := g.d.Service.CanModerate(r.Context(), who, id); err != nil {
		writeErr(w, err)
		return
	}
	key, err := g.d.Rooms.ResetKey(r.Context(), id)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]string{"id": id, "stream_key": key})
}

func (g *Gateway) requireRoom(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	ok, err := g.d.Rooms.Exists(r.Context(), id)
	if err != nil {
		writeErr(w, err)
		return "", false
	}
	if !ok {
		writeErr(w, errs.New(errs.RoomNotFound, "no such room"))
		return "", false
	}
	return id, true
}

func (g *Gateway) handleAudience(w http.ResponseWriter, r *http.Request) {
	id, ok := g.requireRoom(w, r)
	if !ok {
		return
	}
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			writeErr(w, errs.New(errs.BadRequest, "limit must be 1–500"))
			return
		}
		limit = n
	}
	members, err := g.d.Presence.Audience(r.Context(), id, limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	online, _ := g.d.Presence.Count(r.Context(), id)
	if members == nil {
		members = members[:0:0]
	}
	writeJSON(w, 200, map[string]any{"room": id, "online": online, "audience": members})
}

func (g *Gateway) handleStats(w http.ResponseWriter, r *http.Request) {
	id, ok := g.requireRoom(w, r)
	if !ok {
		return
	}
	st, err := g.d.Presence.Stats(r.Context(), id)
	if err != nil {
		writeErr(w, err)
		return
	}
	likes, _ := g.d.Node.LikesTotal(r.Context(), id)
	writeJSON(w, 200, map[string]any{"room": id, "online": st.Online, "peak": st.Peak, "viewers": st.Viewers,
		"total_watch_seconds": st.TotalSeconds, "avg_watch_seconds": st.AvgSeconds, "top_watchers": st.TopWatchers, "likes": likes})
}

func (g *Gateway) handleStream(w http.ResponseWriter, r *http.Request) {
	id, ok := g.requireRoom(w, r)
	if !ok {
		return
	}
	if g.d.StreamInfo != nil {
		if info, ok := g.d.StreamInfo(id); ok {
			writeJSON(w, 200, info)
			return
		}
	}
	writeJSON(w, 200, map[string]any{"room": id, "live": false})
}
