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

// grabBody is the HTTP grab's optional body: {"taps":N}.
type grabBody struct {
	Taps *int `json:"taps"`
}

func (g *Gateway) handleGrab(w http.ResponseWriter, r *http.Request) {
	c, k, ok := g.callerRain(w, r)
	if !ok {
		return
	}
	var body grabBody
	if r.ContentLength != 0 { // no body: one tap, as before taps existed
		if err := decode(w, r, &body); err != nil {
			writeErr(w, err)
			return
		}
	}
	taps, err := grabTaps(body.Taps)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := g.d.Quiz.GrabTaps(r.Context(), c.User, r.PathValue("id"), k, taps)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeRaw(w, 200, appendGrabResult(append(make([]byte, 0, 128), '{'), res, false))
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

// grabTaps reads a grab's "taps": absent is 0 (one tap, answered as
// before taps existed); named, it must be 1–quiz.MaxGrabTaps.
func grabTaps(taps *int) (int, error) {
	if taps == nil {
		return 0, nil
	}
	if *taps < 1 || !quiz.ValidTaps(*taps) {
		return 0, errs.New(errs.BadRequest, "taps must be 1–"+strconv.Itoa(quiz.MaxGrabTaps))
	}
	return *taps, nil
}

// appendGrabResult appends a grab's answer fields to b (after "{" or a
// field; comma tells which): amount_cents, reason when nothing was won,
// and — when the grab named its taps — packets, taps and admitted; then
// the closing brace.
func appendGrabResult(b []byte, res quiz.GrabResult, comma bool) []byte {
	if comma {
		b = append(b, ',')
	}
	b = append(b, `"amount_cents":`...)
	b = strconv.AppendInt(b, res.AmountCents, 10)
	if res.Reason != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, res.Reason...)
		b = append(b, '"')
	}
	if res.Taps > 0 {
		b = append(b, `,"packets":`...)
		b = strconv.AppendInt(b, int64(res.Packets), 10)
		b = append(b, `,"taps":`...)
		b = strconv.AppendInt(b, int64(res.Taps), 10)
		b = append(b, `,"admitted":`...)
		b = strconv.AppendInt(b, int64(res.Admitted), 10)
	}
	return append(b, '}')
}

// grabOn grabs for the connection's user: taps taps (0: one, unnamed).
func (g *WSHandler) grabOn(st *wsState, activity string, k, taps int) (quiz.GrabResult, error) {
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
	if n := st.admitted.Swap(0); n > 0 {
		return g.quiz.GrabAdmitted(ctx, user, activity, k, taps, int(n))
	}
	return g.quiz.GrabTaps(ctx, user, activity, k, taps)
}

// onGrab is the JSON WebSocket grab frame: {"type":"grab","id","activity","rain"[,"taps"]}
// → {"type":"grab_ok","id","activity","rain","amount_cents"[,"reason"][,"packets","taps","admitted"]}
// or an error frame.
func (g *WSHandler) onGrab(c *ws.Conn, st *wsState, id, activity string, rain, tapsField *int) {
	if rain == nil {
		g.sendError(c, id, errs.New(errs.BadRequest, "a grab names its activity and rain (0–19)"))
		return
	}
	taps, err := grabTaps(tapsField)
	if err != nil {
		g.sendError(c, id, err)
		return
	}
	res, err := g.grabOn(st, activity, *rain, taps)
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
	_ = c.SendText(appendGrabResult(b, res, true))
}

// OnMessageInline implements ws.InlineHandler, on the poller goroutine:
//   - an answer (JSON or protobuf) that the quiz decides from this node's
//     memory (quiz.Service.AnswerNow: memory mode, the activity known) is
//     decided, sealed and answered there, as OnMessage would answer it,
//     without the hand-over to a handler goroutine;
//   - a grab takes its tokens from the node's bucket, after the same checks
//     grabOn makes. Turned away, it is answered there, in microseconds, as
//     GrabTaps would answer it; admitted, it goes on to OnMessage (which
//     takes no more tokens: st.admitted).
//
// Anything else is left to OnMessage.
func (g *WSHandler) OnMessageInline(c *ws.Conn, data []byte) bool {
	st, _ := c.Value().(*wsState)
	if st == nil {
		return false
	}
	if st.enc == fanout.Proto {
		return g.protoInline(c, st, data)
	}
	var f fastFrame
	if !f.parse(data) {
		return false
	}
	if len(f.id) > 64 {
		f.id = f.id[:64]
	}
	switch f.typ {
	case "answer":
		return g.answerInline(c, st, &f)
	case "grab":
		return g.grabInline(c, st, &f)
	}
	return false
}

// grabInline is OnMessageInline for a JSON grab.
func (g *WSHandler) grabInline(c *ws.Conn, st *wsState, f *fastFrame) bool {
	if !f.hasRain || !validGrab(f.activity, f.rain) || !st.hasUser() {
		return false
	}
	taps := 0
	if f.hasTaps {
		if taps = f.taps; taps < 1 || !quiz.ValidTaps(taps) {
			return false
		}
	}
	if n := g.quiz.Admit(taps); n > 0 {
		st.admitted.Store(int32(n))
		return false
	}
	g.frames.grab.Inc()
	sendGrabOK(c, f.id, f.activity, f.rain, quiz.GrabResult{Reason: quiz.ReasonThrottled, Taps: taps})
	return true
}

// protoInline is OnMessageInline for protobuf: a message of one answer or
// grab REQUEST frame.
func (g *WSHandler) protoInline(c *ws.Conn, st *wsState, data []byte) bool {
	n, k := protowire.ConsumeVarint(data)
	if k < 0 || n != uint64(len(data)-k) || (g.maxFrame > 0 && n > uint64(g.maxFrame)) {
		return false
	}
	var f pb.Frame
	if proto.Unmarshal(data[k:], &f) != nil || f.Kind != wire.Request {
		return false
	}
	switch f.Type {
	case wire.TypeAnswer:
		return g.protoAnswerInline(c, st, &f)
	case wire.TypeGrab:
		return g.protoGrabInline(c, st, &f)
	}
	return false
}

// protoGrabInline refuses a protobuf grab the bucket turns away, with the
// GrabAck onProtoGrab would send.
func (g *WSHandler) protoGrabInline(c *ws.Conn, st *wsState, f *pb.Frame) bool {
	var body pb.GrabRequest
	if proto.Unmarshal(f.Body, &body) != nil || !validGrab(body.Activity, int(body.Rain)) ||
		!quiz.ValidTaps(int(body.Taps)) || !st.hasUser() {
		return false
	}
	if a := g.quiz.Admit(int(body.Taps)); a > 0 {
		st.admitted.Store(int32(a))
		return false
	}
	g.frames.grab.Inc()
	g.sendProto(c, g.response(f, "", grabAck(&body, quiz.GrabResult{Reason: quiz.ReasonThrottled, Taps: int(body.Taps)})))
	return true
}

// grabAck is the GrabAck answering req with res.
func grabAck(req *pb.GrabRequest, res quiz.GrabResult) *pb.GrabAck {
	a := &pb.GrabAck{Activity: req.Activity, Rain: req.Rain, AmountCents: res.AmountCents, Reason: res.Reason}
	if res.Taps > 0 { // named taps: the extension fields
		a.Packets, a.Taps, a.Admitted = int32(res.Packets), int32(res.Taps), int32(res.Admitted)
	}
	return a
}

// onProtoGrab is the protobuf grab: a type 4 REQUEST with a GrabRequest
// body (taps 0: one, unnamed), answered with a GrabAck.
func (g *WSHandler) onProtoGrab(c *ws.Conn, st *wsState, f *pb.Frame) {
	var body pb.GrabRequest
	if err := proto.Unmarshal(f.Body, &body); err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, errs.New(wire.ErrBadFrame, "grab body does not parse: "+err.Error())))
		return
	}
	if !quiz.ValidTaps(int(body.Taps)) {
		_, err := grabTaps(new(int(body.Taps)))
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, err))
		return
	}
	res, err := g.grabOn(st, body.Activity, int(body.Rain), int(body.Taps))
	if err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, err))
		return
	}
	g.sendProto(c, g.response(f, "", grabAck(&body, res)))
}
