package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"

	"roomcast/internal/archive"
	"roomcast/internal/errs"
	"roomcast/internal/record"
)

// Recordings is what the gateway needs of the recorder (issue 10).
type Recordings interface {
	Sessions(ctx context.Context, room string, limit int) ([]record.Session, error)
	Session(ctx context.Context, id string) (record.Session, error)
	Enabled(ctx context.Context, room string) (bool, error)
	SetEnabled(ctx context.Context, room string, on bool) error
}

// Archive is what the gateway needs of the danmaku archive: replay reads,
// which never touch the live timeline store.
type Archive interface {
	Range(ctx context.Context, session string, fromMS, toMS int64, limit int) (archive.Page, error)
	Around(ctx context.Context, session string, tMS int64, count int) ([]archive.Entry, error)
	Counts(ctx context.Context, sessions []string) (map[string]int64, error)
}

func (g *Gateway) replayReady(w http.ResponseWriter) bool {
	if g.d.Recordings == nil || g.d.Archive == nil {
		writeErr(w, errs.New(errs.NotFound, "recording and replay are not enabled on this server"))
		return false
	}
	return true
}

// withCounts fills each session's archived message count.
func (g *Gateway) withCounts(ctx context.Context, ss []record.Session) error {
	ids := make([]string, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	counts, err := g.d.Archive.Counts(ctx, ids)
	if err != nil {
		return err
	}
	for i := range ss {
		ss[i].Messages = counts[ss[i].ID]
	}
	g.withCovers(ss)
	return nil
}

func (g *Gateway) handleSessions(w http.ResponseWriter, r *http.Request) {
	if !g.replayReady(w) {
		return
	}
	id, ok := g.requireRoom(w, r)
	if !ok {
		return
	}
	limit, ok := intParam(w, r, "limit", 50, 1, 500)
	if !ok {
		return
	}
	ss, err := g.d.Recordings.Sessions(r.Context(), id, limit)
	if err == nil {
		err = g.withCounts(r.Context(), ss)
	}
	if err != nil {
		writeErr(w, unavailableErr(err))
		return
	}
	writeJSON(w, 200, map[string]any{"sessions": ss})
}

// session returns the session of the {sid} path value, or writes 404.
func (g *Gateway) session(w http.ResponseWriter, r *http.Request) (record.Session, bool) {
	if !g.replayReady(w) {
		return record.Session{}, false
	}
	s, err := g.d.Recordings.Session(r.Context(), r.PathValue("sid"))
	if errors.Is(err, record.ErrNotFound) {
		writeErr(w, errs.New(errs.NotFound, "no such session"))
		return s, false
	}
	if err != nil {
		writeErr(w, unavailableErr(err))
		return s, false
	}
	return s, true
}

func (g *Gateway) handleSession(w http.ResponseWriter, r *http.Request) {
	s, ok := g.session(w, r)
	if !ok {
		return
	}
	ss := []record.Session{s}
	if err := g.withCounts(r.Context(), ss); err != nil {
		writeErr(w, unavailableErr(err))
		return
	}
	writeJSON(w, 200, ss[0])
}

func (g *Gateway) handleGetRecording(w http.ResponseWriter, r *http.Request) {
	if !g.replayReady(w) {
		return
	}
	id, ok := g.requireRoom(w, r)
	if !ok {
		return
	}
	on, err := g.d.Recordings.Enabled(r.Context(), id)
	if err != nil {
		writeErr(w, unavailableErr(err))
		return
	}
	writeJSON(w, 200, map[string]any{"room": id, "enabled": on})
}

func (g *Gateway) handlePutRecording(w http.ResponseWriter, r *http.Request) {
	if !g.replayReady(w) {
		return
	}
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	id, ok := g.requireRoom(w, r)
	if !ok {
		return
	}
	if err := g.d.Service.CanModerate(r.Context(), who, id); err != nil {
		writeErr(w, err)
		return
	}
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := decode(w, r, &body); err != nil {
		writeErr(w, err)
		return
	}
	if body.Enabled == nil {
		writeErr(w, errs.New(errs.BadRequest, `"enabled" (true or false) is required`))
		return
	}
	if err := g.d.Recordings.SetEnabled(r.Context(), id, *body.Enabled); err != nil {
		writeErr(w, unavailableErr(err))
		return
	}
	writeJSON(w, 200, map[string]any{"room": id, "enabled": *body.Enabled})
}

func (g *Gateway) handleSessionMessages(w http.ResponseWriter, r *http.Request) {
	s, ok := g.session(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format != "" && format != "json" && format != "bilibili" {
		writeErr(w, errs.New(errs.BadRequest, `unknown format "`+trimTo(format, 32)+`" (use json or bilibili)`))
		return
	}
	from, ok := int64Param(w, r, "from_ms", 0)
	if !ok {
		return
	}
	to, ok := int64Param(w, r, "to_ms", math.MaxInt64)
	if !ok {
		return
	}
	if from < 0 || to < 0 {
		writeErr(w, errs.New(errs.BadRequest, "from_ms and to_ms must be ≥ 0"))
		return
	}
	if from > to {
		writeErr(w, errs.New(errs.BadRequest, "from_ms must not be greater than to_ms"))
		return
	}
	limit, ok := intParam(w, r, "limit", 500, 1, archive.MaxLimit)
	if !ok {
		return
	}
	p, err := g.d.Archive.Range(r.Context(), s.ID, from, to, limit)
	if err != nil {
		writeErr(w, unavailableErr(err))
		return
	}
	if format == "bilibili" {
		h := w.Header()
		h.Set("Content-Type", "application/xml; charset=utf-8")
		h.Set("Content-Disposition", `inline; filename="`+s.ID+`.xml"`)
		if p.NextFromMS != nil {
			h.Set("X-Next-From-Ms", strconv.FormatInt(*p.NextFromMS, 10))
		}
		_ = archive.WriteBilibili(w, p.Entries)
		return
	}
	writeRaw(w, 200, archive.AppendJSON(make([]byte, 0, 4096), p.Entries, p.NextFromMS))
}

func (g *Gateway) handleSessionAround(w http.ResponseWriter, r *http.Request) {
	s, ok := g.session(w, r)
	if !ok {
		return
	}
	if r.URL.Query().Get("t_ms") == "" {
		writeErr(w, errs.New(errs.BadRequest, "t_ms is required"))
		return
	}
	t, ok := int64Param(w, r, "t_ms", 0)
	if !ok {
		return
	}
	if t < 0 {
		writeErr(w, errs.New(errs.BadRequest, "t_ms must be ≥ 0"))
		return
	}
	count, ok := intParam(w, r, "count", 50, 1, archive.MaxCount)
	if !ok {
		return
	}
	es, err := g.d.Archive.Around(r.Context(), s.ID, t, count)
	if err != nil {
		writeErr(w, unavailableErr(err))
		return
	}
	writeRaw(w, 200, archive.AppendJSON(make([]byte, 0, 4096), es, nil))
}

// intParam reads an optional integer query parameter within [lo, hi].
func intParam(w http.ResponseWriter, r *http.Request, name string, def, lo, hi int) (int, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		writeErr(w, errs.New(errs.BadRequest, name+" must be an integer from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi)))
		return 0, false
	}
	return n, true
}

// int64Param reads an optional integer query parameter.
func int64Param(w http.ResponseWriter, r *http.Request, name string, def int64) (int64, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		writeErr(w, errs.New(errs.BadRequest, name+" must be an integer (milliseconds)"))
		return 0, false
	}
	return n, true
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// unavailableErr keeps client-facing errors and turns the rest (SQL
// failures) into 503 unavailable.
func unavailableErr(err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return e
	}
	return errs.New(errs.Unavailable, "the session store is unavailable, try again")
}
