package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/auth"
	"roomcast/internal/errs"
	"roomcast/internal/fanout"
	"roomcast/internal/message"
	"roomcast/internal/metrics"
	"roomcast/internal/presence"
	"roomcast/internal/service"
	"roomcast/internal/wire"
	"roomcast/internal/ws"
)

// jsonSink and protoSink adapt a WebSocket connection to the fan-out: a
// batch's frame in the connection's encoding is built once (Payload.Frame)
// and shared by every connection of that encoding. They are the *ws.Conn
// itself, one type per encoding, so the fan-out's call reaches the
// connection without loading a wrapper first (a cache miss per write at
// thousands of viewers).
type (
	jsonSink  ws.Conn
	protoSink ws.Conn
)

func (s *jsonSink) Send(p *fanout.Payload) error  { return (*ws.Conn)(s).Send(p.Frame(fanout.JSON)) }
func (s *protoSink) Send(p *fanout.Payload) error { return (*ws.Conn)(s).Send(p.Frame(fanout.Proto)) }

func (s *jsonSink) Close(code int, reason string)  { (*ws.Conn)(s).Close(code, reason) }
func (s *protoSink) Close(code int, reason string) { (*ws.Conn)(s).Close(code, reason) }

// newSink is c's sink for encoding enc.
func newSink(c *ws.Conn, enc fanout.Encoding) fanout.Sink {
	if enc == fanout.Proto {
		return (*protoSink)(c)
	}
	return (*jsonSink)(c)
}

// wsState is the gateway's per-connection state.
type wsState struct {
	room string
	enc  fanout.Encoding // negotiated in the handshake; static
	fc   *fanout.Conn

	mu       sync.Mutex
	id       service.Identity // guarded by mu
	attached bool             // guarded by mu
	cursor   uint64
	hasCur   bool
	// move is the better node for a hot room (R14), told in the first batch.
	move     string
	epoch    string
	hasEpoch bool
	// admitted: the grab OnMessage handles next took this many tokens
	// from the bucket in OnMessageInline (rain.go); 0: none yet.
	admitted atomic.Int32
}

// OriginPolicy is the WebSocket origin check for origins (the --origins
// flag: "*" or a comma-separated list of origins or hosts): it allows
// non-browser clients (no Origin), the same host, and the listed origins.
// The app hands it to the ws.Server; the gateway checks it before upgrading.
func OriginPolicy(origins string) func(*http.Request) bool {
	var allowed []string
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			allowed = append(allowed, o)
		}
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" || origins == "*" {
			return true
		}
		u, err := url.Parse(origin)
		if err != nil {
			return false
		}
		if strings.EqualFold(u.Host, r.Host) {
			return true
		}
		for _, o := range allowed {
			if strings.EqualFold(o, origin) || strings.EqualFold(o, u.Host) {
				return true
			}
		}
		return false
	}
}

// WSHandler serves the frames of WebSocket connections (it is the
// ws.Server's Handler): auth, send and ping frames, and detaching closed
// connections from the fan-out node. The gateway upgrades and attaches.
type WSHandler struct {
	ids      identities
	svc      Service
	quiz     QuizAnswers
	node     Node
	presence presence.Presence
	maxFrame int
	metrics  *metrics.Metrics
	log      *slog.Logger
	frames   struct{ answer, grab prometheus.Counter } // the hot frames' counters, looked up once
}

// WSDeps are what the WebSocket handler serves.
type WSDeps struct {
	Signer   *auth.Signer
	AdminKey string
	Service  Service
	Quiz     QuizAnswers
	Node     Node
	Presence presence.Presence // online counts for protobuf pongs
	MaxFrame int               // the largest protobuf client message (--max-frame)
	Metrics  *metrics.Metrics
	Log      *slog.Logger
}

// NewWSHandler returns the handler of the WebSocket server.
func NewWSHandler(d WSDeps) (*WSHandler, error) {
	if d.Signer == nil || d.Service == nil || d.Quiz == nil || d.Node == nil || d.Presence == nil || d.Metrics == nil {
		return nil, errors.New("gateway: websocket handler: missing dependency")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	g := &WSHandler{ids: identities{signer: d.Signer, adminKey: d.AdminKey}, svc: d.Service, quiz: d.Quiz, node: d.Node,
		presence: d.Presence, maxFrame: d.MaxFrame, metrics: d.Metrics, log: d.Log}
	g.frames.answer = d.Metrics.WSFrames.WithLabelValues("answer")
	g.frames.grab = d.Metrics.WSFrames.WithLabelValues("grab")
	return g, nil
}

func (g *Gateway) handleWS(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	roomID := q.Get("room")
	if roomID == "" {
		writeErr(w, errs.New(errs.BadRequest, "room is required (/ws?room=ID)"))
		return
	}
	if ok, err := g.d.Rooms.Exists(r.Context(), roomID); err != nil {
		writeErr(w, err)
		return
	} else if !ok {
		writeErr(w, errs.New(errs.RoomNotFound, "no such room"))
		return
	}
	st := &wsState{room: roomID}
	queryEnc, err := queryFormat(q.Get("format"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if s := q.Get("cursor"); s != "" {
		c, ok := parseUint(s)
		if !ok {
			writeErr(w, errs.New(errs.BadRequest, "cursor must be a non-negative integer"))
			return
		}
		st.cursor, st.hasCur = c, true
	}
	if q.Has("epoch") {
		if st.epoch, st.hasEpoch = q.Get("epoch"), true; len(st.epoch) > maxEpoch {
			writeErr(w, errs.New(errs.BadRequest, "epoch is longer than 64 bytes"))
			return
		}
	}
	if q.Get("token") != "" || r.Header.Get("Authorization") != "" {
		id, err := g.identity(r, true, true)
		if err != nil {
			writeErr(w, err)
			return
		}
		if err := checkKicked(r.Context(), g.d.Service, roomID, id); err != nil {
			writeErr(w, err)
			return
		}
		st.id = id
	}
	if !g.origin(r) {
		writeErr(w, errs.New(errs.BadOrigin, "origin not allowed"))
		return
	}
	st.move = g.moveFor(roomID, placementKey(st.id.Claims.Sub, "", clientIP(r)))
	c, err := g.d.WS.Upgrade(w, r, wire.SubprotocolJSON, wire.SubprotocolProto)
	if err != nil {
		return // Upgrade answered the client
	}
	st.enc = negotiatedFormat(c.Subprotocol(), queryEnc)
	c.SetValue(st)
	// Without a token on a private server, the connection attaches after its
	// auth frame.
	if st.id.Claims.Sub != "" || g.cfg.PublicRead {
		if err := g.d.WSHandler.attach(c, st); err != nil {
			c.Close(1011, "attach failed")
			return
		}
	}
	c.Start()
}

func checkKicked(ctx context.Context, svc Service, roomID string, id service.Identity) error {
	if id.Claims.Sub == "" || id.Admin {
		return nil
	}
	kicked, err := svc.Kicked(ctx, roomID, id.Claims.Sub)
	if err != nil {
		return err
	}
	if kicked {
		return errs.New(errs.Kicked, "you were removed from this room")
	}
	return nil
}

func (g *WSHandler) attach(c *ws.Conn, st *wsState) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.attached {
		return nil
	}
	sess := "w:" + strconv.FormatUint(uint64(connSeq.Add(1)), 36) + ":" + c.RemoteAddr().String()
	st.fc = &fanout.Conn{Sink: newSink(c, st.enc), Room: st.room, Session: sess, Member: presence.Member{
		Session: sess, UserID: st.id.Claims.Sub, Name: st.id.Claims.Name, Level: st.id.Claims.Level},
		Move: st.move, Epoch: st.epoch, HasEpoch: st.hasEpoch}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.node.Attach(ctx, st.fc, st.cursor, st.hasCur); err != nil {
		g.log.Warn("gateway: attach", "room", st.room, "err", err)
		return err
	}
	st.attached = true
	// A kick published while the connection was attaching found it not yet
	// in the node's user index; the kick's state was stored before it was
	// published, so this second look cannot miss it.
	if errs.From(checkKicked(ctx, g.svc, st.room, st.id)).Code == errs.Kicked {
		c.Close(4003, "kicked")
	}
	return nil
}

// clientFrame is any client → server frame.
type clientFrame struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Token string          `json:"token"`
	Kind  message.Kind    `json:"kind"`
	Text  string          `json:"text"`
	Gift  *message.Gift   `json:"gift"`
	Scope message.Scope   `json:"scope"`
	To    string          `json:"to"`
	Data  json.RawMessage `json:"data"`
	// VideoMS is the live position the sender was watching (issue 10).
	VideoMS *int64 `json:"video_ms"`
	// ClientMsgID makes a send idempotent (issue 8).
	ClientMsgID string `json:"client_msg_id"`
	// The answer frame's fields (issue 12), decoded with the rest; a grab
	// frame (issue 13) uses their activity and Rain.
	answerFields
	Rain *int `json:"rain"`
	Taps *int `json:"taps"`
}

// OnMessage implements ws.Handler: client frames, one at a time per connection.
func (g *WSHandler) OnMessage(c *ws.Conn, data []byte) {
	st, _ := c.Value().(*wsState)
	if st == nil {
		return
	}
	if st.enc == fanout.Proto {
		g.onProtoMessage(c, st, data)
		return
	}
	if g.onFastFrame(c, st, data) {
		return
	}
	var f clientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		g.metrics.WSFrames.WithLabelValues("bad").Inc()
		g.sendError(c, "", errs.New(errs.BadJSON, "frame is not valid JSON"))
		return
	}
	if len(f.ID) > 64 {
		f.ID = f.ID[:64]
	}
	switch f.Type {
	case "ping":
		g.metrics.WSFrames.WithLabelValues("ping").Inc()
		_ = c.SendText([]byte(`{"type":"pong"}`))
	case "auth":
		g.metrics.WSFrames.WithLabelValues("auth").Inc()
		g.onAuth(c, st, f)
	case "send":
		g.metrics.WSFrames.WithLabelValues("send").Inc()
		g.onSend(c, st, f)
	case "answer":
		g.frames.answer.Inc()
		g.onAnswer(c, st, f.ID, f.Activity, f.N, f.Option)
	case "grab":
		g.frames.grab.Inc()
		g.onGrab(c, st, f.ID, f.Activity, f.Rain, f.Taps)
	default:
		g.metrics.WSFrames.WithLabelValues("unknown").Inc()
		g.sendError(c, f.ID, errs.New(errs.BadRequest, "unknown frame type"))
	}
}

func (g *WSHandler) onAuth(c *ws.Conn, st *wsState, f clientFrame) {
	id, err := g.authenticate(c, st, f.Token)
	if err == errAttach {
		return // closed with 1011
	} else if err != nil {
		g.sendError(c, f.ID, err)
		return
	}
	b := append([]byte(`{"type":"auth_ok","id":`), message.AppendString(nil, f.ID)...)
	b = append(b, `,"user":`...)
	b = message.AppendString(b, id.Claims.Sub)
	_ = c.SendText(append(b, '}'))
}

// errAttach is returned by authenticate after it closed the connection.
var errAttach = errs.New(errs.Unavailable, "attach failed")

// authenticate makes the connection the token's user (an auth frame, in
// either encoding): a refused token changes nothing. A connection not yet
// attached (private reads) is attached now; if that fails it is closed
// with 1011 and errAttach returned.
func (g *WSHandler) authenticate(c *ws.Conn, st *wsState, token string) (service.Identity, error) {
	id, err := g.ids.identityOf(token, true)
	if err == nil {
		err = checkKicked(context.Background(), g.svc, st.room, id)
	}
	if err != nil {
		return service.Identity{}, err
	}
	st.mu.Lock()
	attached := st.attached
	st.id = id
	st.mu.Unlock()
	if attached {
		g.node.Identify(st.fc, presence.Member{UserID: id.Claims.Sub, Name: id.Claims.Name, Level: id.Claims.Level})
	} else if err := g.attach(c, st); err != nil {
		c.Close(1011, "attach failed")
		return service.Identity{}, errAttach
	}
	return id, nil
}

func (g *WSHandler) onSend(c *ws.Conn, st *wsState, f clientFrame) {
	req := &message.Request{ID: f.ID, Kind: f.Kind, Text: f.Text, Gift: f.Gift, Scope: f.Scope, To: f.To, Data: f.Data, VideoMS: f.VideoMS,
		ClientMsgID: f.ClientMsgID}
	res, err := g.sendAs(st, req)
	if err != nil {
		g.sendError(c, f.ID, err)
		return
	}
	b := append([]byte(`{"type":"ack","id":`), message.AppendString(nil, f.ID)...)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, res.Msg.Seq, 10)
	b = append(b, `,"msg_id":`...)
	b = message.AppendString(b, res.Msg.ID)
	if res.Msg.Epoch != "" {
		b = append(b, `,"epoch":`...)
		b = message.AppendString(b, res.Msg.Epoch)
	}
	if res.Msg.VideoMS != nil {
		b = append(b, `,"video_ms":`...)
		b = strconv.AppendInt(b, *res.Msg.VideoMS, 10)
	}
	if res.Msg.Kind == message.KindLike {
		b = append(b, `,"likes":`...)
		b = strconv.AppendInt(b, res.Likes, 10)
	}
	_ = c.SendText(append(b, '}'))
}

// sendAs sends req into the connection's room as its user (a send frame, in
// either encoding), with the same rules as the HTTP send.
func (g *WSHandler) sendAs(st *wsState, req *message.Request) (service.Result, error) {
	st.mu.Lock()
	id := st.id
	st.mu.Unlock()
	if id.Claims.Sub == "" {
		return service.Result{}, errs.New(errs.Unauthorized, "sending needs a token (connect with ?token= or send an auth frame)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return g.svc.Send(ctx, id, st.room, req)
}

func (g *WSHandler) sendError(c *ws.Conn, id string, err error) {
	e := errs.From(err)
	b := append([]byte(`{"type":"error","id":`), message.AppendString(nil, id)...)
	b = append(b, `,"error":{"code":`...)
	b = message.AppendString(b, e.Code)
	b = append(b, `,"message":`...)
	b = message.AppendString(b, e.Message)
	if e.RetryAfterMS > 0 {
		b = append(b, `,"retry_after_ms":`...)
		b = strconv.AppendInt(b, e.RetryAfterMS, 10)
	}
	_ = c.SendText(append(b, '}', '}'))
}

// OnClose implements ws.Handler.
func (g *WSHandler) OnClose(c *ws.Conn, code int, reason string) {
	st, _ := c.Value().(*wsState)
	if st == nil {
		return
	}
	st.mu.Lock()
	fc, attached := st.fc, st.attached
	st.mu.Unlock()
	if attached {
		g.node.Detach(fc)
	}
	if code == 4008 {
		g.metrics.Drops.WithLabelValues("slow_consumer").Inc()
	}
}

// connSeq numbers WebSocket sessions on this node.
var connSeq atomic.Uint64
