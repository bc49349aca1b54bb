package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/errs"
	"roomcast/internal/fanout"
	"roomcast/internal/keepalive"
	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/room"
	"roomcast/internal/service"
)

// Poll limits (R7).
const (
	defaultPollLimit = 15
	maxPollLimit     = 100
	maxEpoch         = 64 // bytes of a client's epoch= (the server's are 16)
)

var pollBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (g *Gateway) handlePoll(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	bp := pollBufs.Get().(*[]byte)
	b, reset, err := g.answerPoll(r.Context(), r.PathValue("id"), r.URL.Query(), r.Header.Get("Authorization"), clientIP(r), (*bp)[:0])
	if err != nil {
		pollBufs.Put(bp)
		g.pollErr(w, err)
		return
	}
	g.pollDone(start, reset)
	// A keep-alive poller's next polls are read and answered on the lean
	// path (issue 14); anything else it sends comes back here.
	var kept *keepalive.Conn
	taken := false
	if g.d.Keep != nil {
		kept, taken = g.d.Keep.Take(w, r, b)
	}
	if !taken {
		writeRaw(w, 200, b)
	}
	if cap(b) <= 64<<10 {
		*bp = b
		pollBufs.Put(bp)
	}
	if kept != nil {
		kept.Serve(g.keptPoll)
	}
}

// keptPoll answers a poll read by the keep-alive path; a request it does
// not take (another path, an escaped room id, an error to answer) goes
// back to net/http, which serves it as any other.
func (g *Gateway) keptPoll(ctx context.Context, r *keepalive.Request, dst []byte) ([]byte, bool) {
	rest, ok := strings.CutPrefix(r.Path, "/api/rooms/")
	if !ok {
		return nil, false
	}
	id, ok := strings.CutSuffix(rest, "/messages")
	if !ok || !room.ValidID(id) {
		return nil, false
	}
	q, err := url.ParseQuery(r.Query)
	if err != nil {
		return nil, false
	}
	start := time.Now()
	b, reset, err := g.answerPoll(ctx, id, q, r.Authorization, remoteIP(r.RemoteAddr), dst)
	if err != nil {
		return nil, false
	}
	g.pollDone(start, reset)
	return b, true
}

// answerPoll answers a poll of room id (query q, Authorization header authz,
// from address ip) by appending its body to dst; reset reports a cursor
// the room no longer holds.
func (g *Gateway) answerPoll(ctx context.Context, id string, q url.Values, authz, ip string, dst []byte) (body []byte, reset bool, err error) {
	if ok, err := g.d.Rooms.Exists(ctx, id); err != nil || !ok {
		if err == nil {
			err = errs.New(errs.RoomNotFound, "no such room")
		}
		return nil, false, err
	}
	pq, err := parsePollQuery(q)
	if err != nil {
		return nil, false, err
	}
	tok := auth.BearerToken(authz)
	if tok == "" {
		tok = q.Get("token")
	}
	who, err := g.identityOf(tok, !g.cfg.PublicRead)
	if err != nil {
		return nil, false, err
	}
	// A poller is one session for presence: its sid, else its user, else its address.
	sess := q.Get("sid")
	if len(sess) > 64 {
		sess = sess[:64]
	}
	switch {
	case sess != "":
		sess = "p:" + sess
	case who.Claims.Sub != "":
		sess = "pu:" + who.Claims.Sub
	default:
		sess = "pa:" + ip
	}
	pq.Member = presence.Member{Session: sess, UserID: who.Claims.Sub, Name: who.Claims.Name, Level: who.Claims.Level}
	a, err := g.d.Node.Poll(ctx, id, pq)
	if err != nil {
		return nil, false, errs.From(unavailableIfPlain(err))
	}
	// An anonymous resuming poller's answer is the room's shared page
	// (issue 14): encoded by the first poller, the same bytes for the rest.
	shared := a.Page != nil && who.Claims.Sub == "" && !a.Stale && len(a.UserMessages) == 0 && pq.HasCursor
	if shared {
		if body := a.Page.JSON.Load(); body != nil {
			return append(dst, *body...), a.Reset, nil
		}
	}
	move := ""
	if !pq.HasCursor { // a first poll: the better node for a hot room (R14)
		move = g.moveFor(id, placementKey(who.Claims.Sub, "", ip))
	}
	b := g.appendPoll(dst, &a, who.Claims.Sub != "", move)
	if shared {
		body := bytes.Clone(b)
		a.Page.JSON.Store(&body)
	}
	return b, a.Reset, nil
}

// parsePollQuery reads a poll's cursor, epoch, limit and user_cursor.
func parsePollQuery(q url.Values) (fanout.PollQuery, error) {
	pq := fanout.PollQuery{Limit: defaultPollLimit}
	if s := q.Get("cursor"); s != "" {
		c, ok := parseUint(s)
		if !ok {
			return pq, errs.New(errs.BadRequest, "cursor must be a non-negative integer")
		}
		pq.Cursor, pq.HasCursor = c, true
	}
	if q.Has("epoch") {
		if pq.Epoch, pq.HasEpoch = q.Get("epoch"), true; len(pq.Epoch) > maxEpoch {
			return pq, errs.New(errs.BadRequest, "epoch is longer than 64 bytes")
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return pq, errs.New(errs.BadRequest, "limit must be a positive integer")
		}
		pq.Limit = min(n, maxPollLimit)
	}
	if s := q.Get("user_cursor"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return pq, errs.New(errs.BadRequest, "user_cursor must be a non-negative integer")
		}
		pq.UserCursor, pq.HasUserCursor = v, true
	}
	return pq, nil
}

func (g *Gateway) pollDone(start time.Time, reset bool) {
	if reset {
		g.pollReset.Inc()
	} else {
		g.pollOK.Inc()
	}
	g.d.Metrics.PollDuration.Observe(time.Since(start).Seconds())
}

// appendPoll encodes a poll answer; withUser adds user_cursor, move (when
// set) names a better node (R14).
func (g *Gateway) appendPoll(b []byte, a *fanout.PollAnswer, withUser bool, move string) []byte {
	b = append(b, `{"messages":[`...)
	for i, m := range a.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Encoded()...)
	}
	// The poller's user-scoped messages (seq 0) follow the room's.
	for i, m := range a.UserMessages {
		if i > 0 || len(a.Messages) > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Encoded()...)
	}
	b = append(b, `],"cursor":`...)
	b = strconv.AppendUint(b, a.Cursor, 10)
	b = append(b, `,"epoch":`...)
	b = message.AppendString(b, a.Epoch)
	b = append(b, `,"poll_after_ms":`...)
	b = strconv.AppendInt(b, int64(g.pollAfter(a.Online)), 10)
	b = append(b, `,"reset":`...)
	b = strconv.AppendBool(b, a.Reset)
	b = append(b, `,"online":`...)
	b = strconv.AppendInt(b, int64(a.Online), 10)
	b = append(b, `,"likes":`...)
	b = strconv.AppendInt(b, a.Likes, 10)
	if withUser {
		b = append(b, `,"user_cursor":`...)
		b = strconv.AppendInt(b, a.UserCursor, 10)
	}
	if move != "" {
		b = append(b, `,"move":`...)
		b = message.AppendString(b, move)
	}
	if a.Stale { // cluster mode with Redis unreachable: served from this node's cache
		b = append(b, `,"stale":true`...)
	}
	return append(b, '}')
}

func (g *Gateway) pollErr(w http.ResponseWriter, err error) {
	g.pollError.Inc()
	writeErr(w, err)
}

// unavailableIfPlain maps store failures (plain errors) to 503.
func unavailableIfPlain(err error) error {
	if e := errs.From(err); e.Code != errs.Internal {
		return e
	}
	return errs.New(errs.Unavailable, "message store unavailable, try again")
}

// authedBody verifies the caller's token and decodes the JSON body into v;
// on failure it has written the error.
func (g *Gateway) authedBody(w http.ResponseWriter, r *http.Request, v any) (service.Identity, bool) {
	who, err := g.identity(r, true, false)
	if err == nil {
		err = decode(w, r, v)
	}
	if err != nil {
		writeErr(w, err)
		return service.Identity{}, false
	}
	return who, true
}

func (g *Gateway) handleSend(w http.ResponseWriter, r *http.Request) {
	var body message.Request
	who, ok := g.authedBody(w, r, &body)
	if !ok {
		return
	}
	res, err := g.d.Service.Send(r.Context(), who, r.PathValue("id"), &body)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeSendResult(w, res)
}

func writeSendResult(w http.ResponseWriter, res service.Result) {
	if res.Msg.Kind == message.KindLike {
		writeJSON(w, http.StatusAccepted, map[string]any{"id": res.Msg.ID, "seq": 0, "likes": res.Likes})
		return
	}
	ack := map[string]any{"seq": res.Msg.Seq, "id": res.Msg.ID, "ts": res.Msg.TS, "priority": res.Msg.Priority}
	if res.Msg.Epoch != "" { // the timeline epoch seq counts in (room messages)
		ack["epoch"] = res.Msg.Epoch
	}
	if res.Msg.VideoMS != nil {
		ack["video_ms"] = *res.Msg.VideoMS
	}
	writeJSON(w, http.StatusCreated, ack)
}

func (g *Gateway) handleBroadcast(w http.ResponseWriter, r *http.Request) {
	var body message.Request
	who, ok := g.authedBody(w, r, &body)
	if !ok {
		return
	}
	body.Scope = message.ScopeBroadcast
	if body.Kind == "" {
		body.Kind = message.KindSystem
	}
	ids, err := g.d.Rooms.IDs(r.Context())
	if err != nil || len(ids) == 0 {
		writeErr(w, errs.New(errs.NotFound, "there are no rooms to broadcast to"))
		return
	}
	res, err := g.d.Service.Send(r.Context(), who, ids[0], &body)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": res.Msg.ID, "rooms": len(ids)})
}

func (g *Gateway) handleRetract(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	m, err := g.d.Service.Retract(r.Context(), who, r.PathValue("id"), r.PathValue("msg"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"seq": m.Seq, "id": m.ID, "ref": m.Ref})
}

// modBody is the body of kick and mute.
type modBody struct {
	User     string `json:"user"`
	Duration int64  `json:"duration_s"`
}

func (g *Gateway) moderate(w http.ResponseWriter, r *http.Request, act func(service.Identity, string, modBody) error) {
	var body modBody
	who, ok := g.authedBody(w, r, &body)
	if !ok {
		return
	}
	if body.Duration < 0 || body.Duration > 30*24*3600 {
		writeErr(w, errs.New(errs.BadRequest, "duration_s must be 0–2592000"))
		return
	}
	if err := act(who, r.PathValue("id"), body); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"ok": true, "user": body.User})
}

func (g *Gateway) handleKick(w http.ResponseWriter, r *http.Request) {
	g.moderate(w, r, func(who service.Identity, room string, b modBody) error {
		return g.d.Service.Kick(r.Context(), who, room, b.User, time.Duration(b.Duration)*time.Second)
	})
}

func (g *Gateway) handleMute(w http.ResponseWriter, r *http.Request) {
	g.moderate(w, r, func(who service.Identity, room string, b modBody) error {
		return g.d.Service.Mute(r.Context(), who, room, b.User, time.Duration(b.Duration)*time.Second)
	})
}

func (g *Gateway) handleUnmute(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	if err := g.d.Service.Unmute(r.Context(), who, r.PathValue("id"), r.PathValue("user")); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"ok": true})
}
