package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"roomcast/internal/errs"
	"roomcast/internal/fanout"
	"roomcast/internal/message"
	"roomcast/internal/quiz"
	"roomcast/internal/wire"
	"roomcast/internal/ws"
	pb "roomcast/proto/roomcast/v1"
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

// hasUser reports whether the connection has a user (a token).
func (st *wsState) hasUser() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.id.Claims.Sub != ""
}

func validGrab(activity string, k int) bool {
	return activity != "" && len(activity) <= 64 && k >= 0 && k < quiz.MaxRains
}

// grabOn grabs for the connection's user.
func (g *WSHandler) grabOn(st *wsState, activity string, k int) (quiz.GrabResult, error) {
	st.mu.Lock()
	user := st.id.Claims.Sub
	st.mu.Unlock()
	if user == "" {
		return quiz.GrabResult{}, errs.New(errs.Unauthorized, "grabbing needs a token (connect with ?token= or send an auth frame)")
	}
	if !validGrab(activity, k) {
		return quiz.GrabResult{}, errs.New(errs.BadRequest, "a grab names its activity and rain (0–19)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st.admitted.Swap(false) {
		return g.quiz.GrabAdmitted(ctx, user, activity, k)
	}
	return g.quiz.Grab(ctx, user, activity, k)
}

// onGrab is the JSON WebSocket grab frame: {"type":"grab","id","activity","rain"}
// → {"type":"grab_ok","id","activity","rain","amount_cents"[,"reason"]} or an error frame.
func (g *WSHandler) onGrab(c *ws.Conn, st *wsState, id, activity string, rain *int) {
	if rain == nil {
		g.sendError(c, id, errs.New(errs.BadRequest, "a grab names its activity and rain (0–19)"))
		return
	}
	res, err := g.grabOn(st, activity, *rain)
	if err != nil {
		g.sendError(c, id, err)
		return
	}
	sendGrabOK(c, id, activity, *rain, res)
}

func sendGrabOK(c *ws.Conn, id, activity string, rain int, res quiz.GrabResult) {
	var buf [256]byte // the reply is built on the stack; SendText copies it
	b := message.AppendString(append(buf[:0], `{"type":"grab_ok","id":`...), id)
	b = append(b, `,"activity":`...)
	b = message.AppendString(b, activity)
	b = append(b, `,"rain":`...)
	b = strconv.AppendInt(b, int64(rain), 10)
	b = append(b, `,"amount_cents":`...)
	b = strconv.AppendInt(b, res.AmountCents, 10)
	if res.Reason != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, res.Reason...)
		b = append(b, '"')
	}
	_ = c.SendText(append(b, '}'))
}

// OnMessageInline implements ws.InlineHandler: a grab (JSON or protobuf)
// takes its token from the node's bucket on the poller goroutine, after
// the same checks grabOn makes. Turned away, it is answered there, in
// microseconds, as Grab would answer it; admitted, it goes on to OnMessage
// (which takes no second token: st.admitted). Anything else is left to
// OnMessage.
func (g *WSHandler) OnMessageInline(c *ws.Conn, data []byte) bool {
	st, _ := c.Value().(*wsState)
	if st == nil {
		return false
	}
	if st.enc == fanout.Proto {
		return g.protoGrabInline(c, st, data)
	}
	var f fastFrame
	if !f.parse(data) || f.typ != "grab" || !f.hasRain || !validGrab(f.activity, f.rain) || !st.hasUser() {
		return false
	}
	if g.quiz.Admit() {
		st.admitted.Store(true)
		return false
	}
	if len(f.id) > 64 {
		f.id = f.id[:64]
	}
	g.frames.grab.Inc()
	sendGrabOK(c, f.id, f.activity, f.rain, quiz.GrabResult{Reason: quiz.ReasonThrottled})
	return true
}

// protoGrabInline is OnMessageInline for protobuf: a message of one grab
// REQUEST frame, refused with the GrabAck onProtoGrab would send.
func (g *WSHandler) protoGrabInline(c *ws.Conn, st *wsState, data []byte) bool {
	n, k := protowire.ConsumeVarint(data)
	if k < 0 || n != uint64(len(data)-k) || (g.maxFrame > 0 && n > uint64(g.maxFrame)) {
		return false
	}
	var f pb.Frame
	var body pb.GrabRequest
	if proto.Unmarshal(data[k:], &f) != nil || f.Kind != wire.Request || f.Type != wire.TypeGrab ||
		proto.Unmarshal(f.Body, &body) != nil || !validGrab(body.Activity, int(body.Rain)) || !st.hasUser() {
		return false
	}
	if g.quiz.Admit() {
		st.admitted.Store(true)
		return false
	}
	g.frames.grab.Inc()
	g.sendProto(c, g.response(&f, "", &pb.GrabAck{Activity: body.Activity, Rain: body.Rain, Reason: quiz.ReasonThrottled}))
	return true
}

// onProtoGrab is the protobuf grab: a type 4 REQUEST with a GrabRequest
// body, answered with a GrabAck.
func (g *WSHandler) onProtoGrab(c *ws.Conn, st *wsState, f *pb.Frame) {
	var body pb.GrabRequest
	if err := proto.Unmarshal(f.Body, &body); err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, errs.New(wire.ErrBadFrame, "grab body does not parse: "+err.Error())))
		return
	}
	res, err := g.grabOn(st, body.Activity, int(body.Rain))
	if err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, err))
		return
	}
	g.sendProto(c, g.response(f, "", &pb.GrabAck{Activity: body.Activity, Rain: body.Rain, AmountCents: res.AmountCents, Reason: res.Reason}))
}
