package gateway

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"roomcast/internal/errs"
	"roomcast/internal/message"
	"roomcast/internal/quiz"
	"roomcast/internal/service"
	"roomcast/internal/wire"
	"roomcast/internal/ws"
	pb "roomcast/proto/roomcast/v1"
)

// The quiz's HTTP face (issue 12): activities, the operator's steps,
// answers, winners, revival cards and prizes. Every rule lives in
// quiz.Service; these handlers only translate.

func caller(id service.Identity) quiz.Caller {
	return quiz.Caller{User: id.Claims.Sub, Admin: id.Admin}
}

func (g *Gateway) handleCreateActivity(w http.ResponseWriter, r *http.Request) {
	var body quiz.CreateRequest
	who, ok := g.authedBody(w, r, &body)
	if !ok {
		return
	}
	v, err := g.d.Quiz.Create(r.Context(), caller(who), &body)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (g *Gateway) handleGetActivity(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, false, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	v, err := g.d.Quiz.Get(r.Context(), caller(who), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, v)
}

func (g *Gateway) handleRoomActivities(w http.ResponseWriter, r *http.Request) {
	vs, err := g.d.Quiz.List(r.Context(), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"activities": vs})
}

// operatorStep runs one of the operator's steps on /api/activities/{id}[/questions/{n}].
func (g *Gateway) operatorStep(step func(ctx context.Context, c quiz.Caller, id string, n int) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, err := g.identity(r, true, false)
		if err != nil {
			writeErr(w, err)
			return
		}
		n := 0
		if s := r.PathValue("n"); s != "" {
			v, ok := parseUint(s)
			if !ok || v < 1 || v > quiz.MaxQuestions {
				writeErr(w, errs.New(errs.BadRequest, "question numbers are 1–50"))
				return
			}
			n = int(v)
		}
		out, err := step(r.Context(), caller(who), r.PathValue("id"), n)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 200, out)
	}
}

func (g *Gateway) quizRoutes(m *http.ServeMux) {
	q := g.d.Quiz
	m.HandleFunc("POST /api/activities", g.handleCreateActivity)
	m.HandleFunc("GET /api/activities/{id}", g.handleGetActivity)
	m.HandleFunc("GET /api/rooms/{id}/activities", g.handleRoomActivities)
	m.HandleFunc("POST /api/activities/{id}/start", g.operatorStep(func(ctx context.Context, c quiz.Caller, id string, _ int) (any, error) {
		return q.Start(ctx, c, id)
	}))
	m.HandleFunc("POST /api/activities/{id}/questions/{n}/push", g.operatorStep(func(ctx context.Context, c quiz.Caller, id string, n int) (any, error) {
		return q.Push(ctx, c, id, n)
	}))
	m.HandleFunc("POST /api/activities/{id}/questions/{n}/reveal", g.operatorStep(func(ctx context.Context, c quiz.Caller, id string, n int) (any, error) {
		return q.Reveal(ctx, c, id, n)
	}))
	m.HandleFunc("GET /api/activities/{id}/questions/{n}/counts", g.operatorStep(func(ctx context.Context, c quiz.Caller, id string, n int) (any, error) {
		return q.Counts(ctx, c, id, n)
	}))
	m.HandleFunc("POST /api/activities/{id}/answers", g.handleAnswer)
	m.HandleFunc("GET /api/activities/{id}/winners", g.handleWinners)
	m.HandleFunc("POST /api/admin/cards", g.admin(g.handleGrantCards))
	m.HandleFunc("GET /api/me", g.handleMe)
	m.HandleFunc("GET /api/me/prizes", g.handleMyPrizes)
}

// answerBody is an answer, over HTTP or as a WebSocket frame.
type answerBody struct {
	ID string `json:"id"` // frame id, echoed (WebSocket)
	answerFields
}

// answerFields are an answer's own fields; the WebSocket frame decoder
// (clientFrame) embeds them too, so an answer frame is decoded once.
type answerFields struct {
	Activity string `json:"activity"` // WebSocket: default the room's running activity
	N        *int   `json:"n"`
	Option   *int   `json:"option"`
}

func (b *answerBody) check() error {
	if b.N == nil || b.Option == nil {
		return errNoNOption()
	}
	return nil
}

func errNoNOption() error { return errs.New(quiz.CodeInvalid, "n and option are required") }

// answerReply is the answer's acknowledgement: the result sealed with the
// question's key, readable after the reveal.
type answerReply struct {
	Type     string `json:"type,omitempty"`
	ID       string `json:"id,omitempty"`
	Activity string `json:"activity"`
	N        int    `json:"n"`
	Sealed   string `json:"sealed"`
}

func (g *Gateway) handleAnswer(w http.ResponseWriter, r *http.Request) {
	var body answerBody
	who, ok := g.authedBody(w, r, &body)
	if !ok {
		return
	}
	if err := body.check(); err != nil {
		writeErr(w, err)
		return
	}
	id := r.PathValue("id")
	sealed, err := g.d.Quiz.Answer(r.Context(), who.Claims.Sub, id, *body.N, *body.Option)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, answerReply{Activity: id, N: *body.N, Sealed: base64.StdEncoding.EncodeToString(sealed)})
}

// answerInline is OnMessageInline for a JSON answer frame: answered on the
// reader when the quiz decides it from memory, else left to OnMessage.
// f's strings alias the reader's buffer: nothing here keeps them.
func (g *WSHandler) answerInline(c *ws.Conn, st *wsState, f *fastFrame) bool {
	if !f.hasN || !f.hasOption {
		return false
	}
	activity, sealed, ok, err := g.quiz.AnswerNow(st.user(), st.room, f.activity, f.n, f.option)
	if !ok {
		return false
	}
	g.frames.answer.Inc()
	if err != nil {
		g.sendError(c, f.id, err)
		return true
	}
	sendAnswerOK(c, f.id, activity, f.n, sealed)
	return true
}

// protoAnswerInline is answerInline for a protobuf answer REQUEST frame.
func (g *WSHandler) protoAnswerInline(c *ws.Conn, st *wsState, f *pb.Frame) bool {
	var body pb.AnswerRequest
	if proto.Unmarshal(f.Body, &body) != nil {
		return false
	}
	activity, sealed, ok, err := g.quiz.AnswerNow(st.user(), st.room, body.Activity, int(body.N), int(body.Option))
	if !ok {
		return false
	}
	g.frames.answer.Inc()
	if err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, err))
		return true
	}
	g.sendProto(c, g.response(f, "", &pb.AnswerAck{Activity: activity, N: body.N, Sealed: sealed}))
	return true
}

// user is the connection's user ("" before a token).
func (st *wsState) user() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.id.Claims.Sub
}

// answerOn answers for the connection's user in its room: activity "" is
// the room's running activity. It returns the activity and the sealed result.
func (g *WSHandler) answerOn(st *wsState, activity string, n, option int) (string, []byte, error) {
	st.mu.Lock()
	user := st.id.Claims.Sub
	st.mu.Unlock()
	if user == "" {
		return "", nil, errs.New(errs.Unauthorized, "answering needs a token (connect with ?token= or send an auth frame)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if activity == "" {
		return g.quiz.AnswerInRoom(ctx, user, st.room, n, option)
	}
	sealed, err := g.quiz.Answer(ctx, user, activity, n, option)
	return activity, sealed, err
}

// onAnswer is the JSON WebSocket answer frame: {"type":"answer","id","n","option"[,"activity"]}
// → {"type":"answer_ok","id","activity","n","sealed"} or an error frame.
// n and option are nil when the frame lacks them; they do not escape, so
// the fast decoder (wsfast.go) can pass its own.
func (g *WSHandler) onAnswer(c *ws.Conn, st *wsState, id, activity string, n, option *int) {
	if n == nil || option == nil {
		g.sendError(c, id, errNoNOption())
		return
	}
	activity, sealed, err := g.answerOn(st, activity, *n, *option)
	if err != nil {
		g.sendError(c, id, err)
		return
	}
	sendAnswerOK(c, id, activity, *n, sealed)
}

// sendAnswerOK is the JSON answer_ok frame.
func sendAnswerOK(c *ws.Conn, id, activity string, n int, sealed []byte) {
	var buf [256]byte // the reply is built on the stack; SendText copies it
	b := message.AppendString(append(buf[:0], `{"type":"answer_ok","id":`...), id)
	b = append(b, `,"activity":`...)
	b = message.AppendString(b, activity)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"sealed":"`...)
	b = base64.StdEncoding.AppendEncode(b, sealed)
	_ = c.SendText(append(b, '"', '}'))
}

// onProtoAnswer is the protobuf answer: a type 3 REQUEST with an
// AnswerRequest body, answered with an AnswerAck.
func (g *WSHandler) onProtoAnswer(c *ws.Conn, st *wsState, f *pb.Frame) {
	var body pb.AnswerRequest
	if err := proto.Unmarshal(f.Body, &body); err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, errs.New(wire.ErrBadFrame, "answer body does not parse: "+err.Error())))
		return
	}
	activity, sealed, err := g.answerOn(st, body.Activity, int(body.N), int(body.Option))
	if err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, err))
		return
	}
	g.sendProto(c, g.response(f, "", &pb.AnswerAck{Activity: activity, N: body.N, Sealed: sealed}))
}

func (g *Gateway) handleWinners(w http.ResponseWriter, r *http.Request) {
	ps, total, err := g.d.Quiz.Winners(r.Context(), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	type winner struct {
		User        string `json:"user"`
		AmountCents int64  `json:"amount_cents"`
	}
	out := make([]winner, len(ps))
	for i, p := range ps {
		out[i] = winner{p.User, p.AmountCents}
	}
	writeJSON(w, 200, map[string]any{"winners": out, "total_cents": total})
}

func (g *Gateway) handleGrantCards(w http.ResponseWriter, r *http.Request) {
	var body struct {
		User  string `json:"user"`
		Count int    `json:"count"`
	}
	if err := decode(w, r, &body); err != nil {
		writeErr(w, err)
		return
	}
	n, err := g.d.Quiz.GrantCards(r.Context(), body.User, body.Count)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"user": body.User, "cards": n})
}

func (g *Gateway) handleMe(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	n, err := g.d.Quiz.Cards(r.Context(), who.Claims.Sub)
	if err != nil {
		writeErr(w, err)
		return
	}
	total, err := g.d.Quiz.PrizesTotal(r.Context(), who.Claims.Sub)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"user": who.Claims.Sub, "name": who.Claims.Name, "level": who.Claims.Level,
		"role": who.Claims.Role, "cards": n, "prizes_total_cents": total})
}

func (g *Gateway) handleMyPrizes(w http.ResponseWriter, r *http.Request) {
	who, err := g.identity(r, true, false)
	if err != nil {
		writeErr(w, err)
		return
	}
	ps, err := g.d.Quiz.Prizes(r.Context(), who.Claims.Sub)
	if err != nil {
		writeErr(w, err)
		return
	}
	type prize struct {
		Activity    string    `json:"activity"`
		AmountCents int64     `json:"amount_cents"`
		Kind        string    `json:"kind"`
		At          time.Time `json:"at"`
		Rain        *int      `json:"rain,omitempty"`   // kind rain: the rain's number
		Packet      *int      `json:"packet,omitempty"` // kind rain: the packet's number
	}
	out := make([]prize, len(ps))
	for i, p := range ps {
		out[i] = prize{p.Activity, p.AmountCents, p.Kind, time.UnixMilli(p.At).UTC(), p.Rain, p.Packet}
	}
	writeJSON(w, 200, map[string]any{"prizes": out})
}
