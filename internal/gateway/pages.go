package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"roomcast/internal/errs"
	"roomcast/internal/invite"
	"roomcast/internal/rankings"
)

// The HTTP gateway's low-frequency pages (issue 13, G2): gift rankings and
// invitations. Personal pages (/api/me, /api/me/prizes) are in quiz.go.

// Rankings reads gift rankings (a rankings.Board).
type Rankings interface {
	Top(ctx context.Context, room, period string, limit int, now time.Time) ([]rankings.Entry, error)
}

// Invites issues and redeems invitation codes (*invite.Service).
type Invites interface {
	Create(ctx context.Context, user string) (string, bool, error)
	Redeem(ctx context.Context, user, code string) (*invite.Redemption, error)
}

func (g *Gateway) pageRoutes(m *http.ServeMux) {
	if g.d.Rankings != nil {
		m.HandleFunc("GET /api/rooms/{id}/rankings", g.handleRankings)
	}
	if g.d.Invites != nil {
		m.HandleFunc("POST /api/invitations", g.handleInvite)
		m.HandleFunc("POST /api/invitations/{code}/redeem", g.handleRedeem)
	}
}

func (g *Gateway) handleRankings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			writeErr(w, errs.New(errs.BadRequest, "limit must be 1–100"))
			return
		}
		limit = v
	}
	period, limit, err := rankings.CheckQuery(q.Get("period"), limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	room := r.PathValue("id")
	if _, err := g.d.Rooms.Get(r.Context(), room, false); err != nil {
		writeErr(w, err)
		return
	}
	top, err := g.d.Rankings.Top(r.Context(), room, period, limit, time.Now())
	if err != nil {
		writeErr(w, &errs.Error{Code: errs.Unavailable, Message: "rankings unavailable, try again: " + err.Error()})
		return
	}
	writeJSON(w, 200, map[string]any{"room": room, "period": period, "rankings": top})
}

func (g *Gateway) handleInvite(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	code, created, err := g.d.Invites.Create(r.Context(), who.Claims.Sub)
	if err != nil {
		writeErr(w, err)
		return
	}
	status := 200
	if created {
		status = 201
	}
	writeJSON(w, status, map[string]any{"code": code})
}

func (g *Gateway) handleRedeem(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	red, err := g.d.Invites.Redeem(r.Context(), who.Claims.Sub, r.PathValue("code"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, red)
}
