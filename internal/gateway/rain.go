package gateway

import (
	"net/http"

	"roomcast/internal/errs"
	"roomcast/internal/quiz"
)

// The red-packet rain's HTTP face (issue 13): start (operator), grab (a
// user), status (anyone). Every rule lives in quiz.Service.

func (g *Gateway) rainRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /api/activities/{id}/rains/{k}/start", g.handleRainStart)
	m.HandleFunc("POST /api/activities/{id}/rains/{k}/grab", g.handleGrab)
	m.HandleFunc("GET /api/activities/{id}/rains/{k}", g.handleRain)
}

// rainNumber parses {k}: rains are numbered from 0.
func rainNumber(r *http.Request) (int, error) {
	v, ok := parseUint(r.PathValue("k"))
	if !ok || v >= quiz.MaxRains {
		return 0, errs.New(quiz.CodeUnknownRain, "rains are numbered 0–19")
	}
	return int(v), nil
}

// callerRain reads the caller (a token is required) and {k}.
func (g *Gateway) callerRain(w http.ResponseWriter, r *http.Request) (quiz.Caller, int, bool) {
	who, err := g.identity(r, true, false)
	k := 0
	if err == nil {
		k, err = rainNumber(r)
	}
	if err != nil {
		writeErr(w, err)
		return quiz.Caller{}, 0, false
	}
	return caller(who), k, true
}

func (g *Gateway) handleRainStart(w http.ResponseWriter, r *http.Request) {
	c, k, ok := g.callerRain(w, r)
	if !ok {
		return
	}
	v, err := g.d.Quiz.StartRain(r.Context(), c, r.PathValue("id"), k)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, v)
}

func (g *Gateway) handleGrab(w http.ResponseWriter, r *http.Request) {
	c, k, ok := g.callerRain(w, r)
	if !ok {
		return
	}
	res, err := g.d.Quiz.Grab(r.Context(), c.User, r.PathValue("id"), k)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, res)
}

func (g *Gateway) handleRain(w http.ResponseWriter, r *http.Request) {
	k, err := rainNumber(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	v, err := g.d.Quiz.Rain(r.Context(), r.PathValue("id"), k)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, v)
}
