// Package gateway is roomcast's HTTP face: the REST API, short polling, the
// WebSocket endpoint, the route service, admin settings, health and metrics.
// It turns requests into calls on the logic layer (service) and the fan-out
// node, and errors into JSON {"error":{"code","message"}} with the code's
// HTTP status. It holds no business rules itself.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/config"
	"roomcast/internal/errs"
	"roomcast/internal/keepalive"
	"roomcast/internal/metrics"
	"roomcast/internal/presence"
	"roomcast/internal/route"
	"roomcast/internal/service"
)

// Deps are what the gateway serves.
type Deps struct {
	Config   *config.Config
	Signer   *auth.Signer
	AdminKey string
	Rooms    Rooms
	Service  Service
	Quiz     Quiz
	Node     Node
	Presence presence.Presence
	Store    Store
	Bus      bus.Bus
	// WS upgrades /ws requests (the *ws.Server whose handler is WSHandler).
	WS        Upgrader
	WSHandler *WSHandler
	Router    *route.Router
	// Placement is the hot-room placement (R14); nil places nothing.
	Placement Placement
	Metrics   *metrics.Metrics
	Log       *slog.Logger
	// Handlers are the app's other handlers (media, livego, VOD) by
	// ServeMux pattern, and Pages mounts the web pages' routes (*web.Handler).
	Handlers map[string]http.Handler
	Pages    interface{ Mount(mux *http.ServeMux) }
	// StreamInfo answers GET /api/rooms/{id}/stream (nil: 404).
	StreamInfo func(roomID string) (any, bool)
	// Picture is the URL of a room's picture (live thumbnail or cover), ""
	// when it has none; rooms carry it as thumbnail_url (nil: never).
	Picture func(roomID string) string
	// SessionCover is the URL of the last picture of a room's session that
	// ran from start to end (nil end: live), "" when there is none (nil:
	// sessions carry no cover_url).
	SessionCover func(roomID string, start time.Time, end *time.Time) string
	// Recordings and Archive serve sessions and replay (nil: 404).
	Recordings Recordings
	Archive    Archive
	// Rankings and Invites serve gift rankings and invitations (issue 13;
	// nil: 404).
	Rankings Rankings
	Invites  Invites
	// Keep answers keep-alive pollers' next polls off net/http (issue 14;
	// nil: every poll through net/http).
	Keep *keepalive.Server
}

func (d *Deps) check() error {
	if d.Config == nil || d.Signer == nil || d.Rooms == nil || d.Service == nil || d.Quiz == nil || d.Node == nil || d.Presence == nil ||
		d.Store == nil || d.Bus == nil || d.WS == nil || d.WSHandler == nil || d.Router == nil || d.Metrics == nil {
		return errors.New("gateway: missing dependency")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return nil
}

// Gateway is the HTTP handler set.
type Gateway struct {
	d        Deps
	cfg      *config.Config
	log      *slog.Logger
	ids      identities
	origin   func(*http.Request) bool
	poll     atomic.Pointer[[]config.PollStep]
	ready    atomic.Bool
	draining atomic.Bool
	mux      *http.ServeMux

	// Poll counters by result, looked up once (polls are the hot path).
	pollOK, pollReset, pollError prometheus.Counter
}

// New builds the gateway and its routes.
func New(ctx context.Context, d Deps) (*Gateway, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	g := &Gateway{d: d, cfg: d.Config, log: d.Log, mux: http.NewServeMux(),
		ids: identities{signer: d.Signer, adminKey: d.AdminKey}, origin: OriginPolicy(d.Config.Origins),
		pollOK: d.Metrics.Polls.WithLabelValues("ok"), pollReset: d.Metrics.Polls.WithLabelValues("reset"),
		pollError: d.Metrics.Polls.WithLabelValues("error")}
	steps, err := config.ParsePollIntervals(d.Config.PollIntervals)
	if err != nil {
		return nil, err
	}
	g.poll.Store(&steps)
	if err := g.loadSettings(ctx); err != nil {
		return nil, err
	}
	g.routes()
	g.ready.Store(true)
	return g, nil
}

// Handler returns the root handler.
func (g *Gateway) Handler() http.Handler { return g }

// ServeHTTP recovers panics so none reaches a client as a dropped connection.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			g.log.Error("gateway: panic", "path", r.URL.Path, "panic", v)
			writeErr(w, errs.New(errs.Internal, "internal error"))
		}
	}()
	if strings.HasPrefix(r.URL.Path, "/api/") {
		cors(w) // bearer tokens, no cookies: any origin may call the API
	}
	g.mux.ServeHTTP(w, r)
}

// SetDraining marks the server as shutting down (readyz fails).
func (g *Gateway) SetDraining() { g.draining.Store(true) }

func (g *Gateway) routes() {
	m := g.mux
	m.HandleFunc("POST /api/guest", g.handleGuest)
	m.HandleFunc("POST /api/signin", g.handleSignin)
	m.HandleFunc("GET /api/gifts", g.handleGifts)
	m.HandleFunc("POST /api/rooms", g.handleCreateRoom)
	m.HandleFunc("GET /api/rooms", g.handleListRooms)
	m.HandleFunc("GET /api/rooms/{id}", g.handleGetRoom)
	m.HandleFunc("POST /api/rooms/{id}/key/reset", g.handleResetKey)
	m.HandleFunc("POST /api/rooms/{id}/signin-link", g.handleAnchorLink)
	m.HandleFunc("GET /api/rooms/{id}/messages", g.handlePoll)
	m.HandleFunc("POST /api/rooms/{id}/messages", g.handleSend)
	m.HandleFunc("DELETE /api/rooms/{id}/messages/{msg}", g.handleRetract)
	m.HandleFunc("POST /api/rooms/{id}/kick", g.handleKick)
	m.HandleFunc("POST /api/rooms/{id}/mute", g.handleMute)
	m.HandleFunc("DELETE /api/rooms/{id}/mute/{user}", g.handleUnmute)
	m.HandleFunc("GET /api/rooms/{id}/audience", g.handleAudience)
	m.HandleFunc("GET /api/rooms/{id}/stats", g.handleStats)
	m.HandleFunc("GET /api/rooms/{id}/stream", g.handleStream)
	m.HandleFunc("GET /api/rooms/{id}/sessions", g.handleSessions)
	m.HandleFunc("GET /api/rooms/{id}/recording", g.handleGetRecording)
	m.HandleFunc("PUT /api/rooms/{id}/recording", g.handlePutRecording)
	m.HandleFunc("GET /api/sessions/{sid}", g.handleSession)
	m.HandleFunc("GET /api/sessions/{sid}/messages", g.handleSessionMessages)
	m.HandleFunc("GET /api/sessions/{sid}/messages/around", g.handleSessionAround)
	m.HandleFunc("GET /api/route", g.handleRoute)
	m.HandleFunc("POST /api/broadcast", g.handleBroadcast)
	m.HandleFunc("GET /api/admin/route", g.admin(g.handleGetRouteRules))
	m.HandleFunc("PUT /api/admin/route", g.admin(g.handlePutRouteRules))
	m.HandleFunc("GET /api/admin/poll-intervals", g.admin(g.handleGetPollIntervals))
	m.HandleFunc("PUT /api/admin/poll-intervals", g.admin(g.handlePutPollIntervals))
	g.quizRoutes(m) // quiz.go: activities, answers, cards, prizes
	g.rainRoutes(m) // rain.go: red-packet rains
	g.pageRoutes(m) // pages.go: gift rankings, invitations
	m.HandleFunc("OPTIONS /api/", g.handlePreflight)
	m.HandleFunc("GET /ws", g.handleWS)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	m.HandleFunc("GET /readyz", g.handleReady)
	m.Handle("GET /metrics", g.metricsHandler())
	if g.cfg.Pprof {
		g.mountPprof(m)
	}
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, errs.New(errs.NotFound, "no such endpoint: "+r.Method+" "+r.URL.Path))
	})
	for pattern, h := range g.d.Handlers {
		m.Handle(pattern, h)
	}
	if g.d.Pages != nil {
		g.d.Pages.Mount(m)
	}
}

func (g *Gateway) handleReady(w http.ResponseWriter, r *http.Request) {
	if !g.ready.Load() || g.draining.Load() {
		writeErr(w, errs.New(errs.Unavailable, "not ready"))
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"error":{"code":"internal","message":"encoding failed"}}`)
	}
	writeRaw(w, status, b)
}

// Header values shared by every response (net/http only reads them; an
// Add appends to a full slice, which copies): no allocation per answer.
var (
	hdrJSON    = []string{"application/json; charset=utf-8"}
	hdrNoStore = []string{"no-store"}
)

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// errorBody is the JSON error shape of every endpoint.
type errorBody struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	} `json:"error"`
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

func writeErr(w http.ResponseWriter, err error) {
	e := errs.From(err)
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	if e.RetryAfterMS > 0 {
		body.Error.RetryAfterMS, body.RetryAfterMS = e.RetryAfterMS, e.RetryAfterMS
		w.Header().Set("Retry-After", strconv.FormatInt((e.RetryAfterMS+999)/1000, 10))
	}
	writeJSON(w, errs.Status(err), body)
}

// maxBody bounds JSON request bodies.
const maxBody = 64 << 10

// decode reads a JSON body into v with clear errors.
// bodyTimeout bounds reading a request body.
const bodyTimeout = 10 * time.Second

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	// A body that trickles in holds a goroutine and a buffer: it gets
	// bodyTimeout from here (issue 8, hostile clients).
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
	body := http.MaxBytesReader(w, r.Body, maxBody)
	raw, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errs.New(errs.TooLarge, "request body larger than 64 KiB")
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errs.New(errs.BadRequest, "the request body did not arrive within 10 s")
		}
		return errs.New(errs.BadRequest, "could not read the body")
	}
	if !utf8.Valid(raw) {
		return errs.New(errs.InvalidUTF8, "request body is not valid UTF-8")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errs.New(errs.BadJSON, "invalid JSON body: "+trimErr(err))
	}
	return nil
}

func trimErr(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// identity returns the caller: the admin key, or a verified token from the
// Authorization header (or ?token= when allowQuery). required=false returns
// a zero identity without error when no credential is present.
func (g *Gateway) identity(r *http.Request, required, allowQuery bool) (service.Identity, error) {
	tok := auth.BearerToken(r.Header.Get("Authorization"))
	if tok == "" && allowQuery {
		tok = r.URL.Query().Get("token")
	}
	return g.identityOf(tok, required)
}

// identityOf verifies a credential: the admin key or a user token. An empty
// one is an error only when required.
func (g *Gateway) identityOf(tok string, required bool) (service.Identity, error) {
	return g.ids.identityOf(tok, required)
}

// identities verifies credentials: the admin key or a signed user token.
type identities struct {
	signer   *auth.Signer
	adminKey string
}

func (a identities) identityOf(tok string, required bool) (service.Identity, error) {
	if tok == "" {
		if required {
			return service.Identity{}, errs.New(errs.Unauthorized, "a token is required (Authorization: Bearer TOKEN)")
		}
		return service.Identity{}, nil
	}
	if auth.CheckKey(tok, a.adminKey) {
		return service.Identity{Admin: true, Claims: auth.Claims{Sub: "admin", Name: "admin", Level: 100, Role: auth.RoleAdmin}}, nil
	}
	c, err := a.signer.Verify(tok)
	if err != nil {
		return service.Identity{}, err
	}
	return service.Identity{Claims: c, Admin: c.Role == auth.RoleAdmin}, nil
}

// admin wraps h so it needs the admin key.
func (g *Gateway) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !auth.CheckKey(auth.BearerToken(r.Header.Get("Authorization")), g.d.AdminKey) {
			writeErr(w, errs.New(errs.Unauthorized, "the admin key is required (Authorization: Bearer ADMIN_KEY)"))
			return
		}
		h(w, r)
	}
}

var (
	hdrAnyOrigin = []string{"*"}
	hdrCORSHdrs  = []string{"Authorization, Content-Type"}
	hdrCORSMeth  = []string{"GET, POST, PUT, DELETE, OPTIONS"}
	hdrCORSAge   = []string{"600"}
)

func cors(w http.ResponseWriter) {
	h := w.Header()
	h["Access-Control-Allow-Origin"] = hdrAnyOrigin
	h["Access-Control-Allow-Headers"] = hdrCORSHdrs
	h["Access-Control-Allow-Methods"] = hdrCORSMeth
	h["Access-Control-Max-Age"] = hdrCORSAge
}

func (g *Gateway) handlePreflight(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNoContent)
}

// clientIP is the connection's address (proxies are not trusted).
func clientIP(r *http.Request) string { return remoteIP(r.RemoteAddr) }

// remoteIP is the host of a connection's address.
func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// pollAfter returns poll_after_ms for a room of online viewers.
func (g *Gateway) pollAfter(online int) int {
	steps := *g.poll.Load()
	for _, s := range steps {
		if s.Under == 0 || online < s.Under {
			return s.MS
		}
	}
	return steps[len(steps)-1].MS
}

func parseUint(s string) (uint64, bool) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	return v, err == nil
}

// KeptHeader is the header block of a poll answered on the keep-alive path
// (keepalive.Config.Header): what cors and writeRaw set on net/http's.
var KeptHeader = "Access-Control-Allow-Headers: " + hdrCORSHdrs[0] + "\r\n" +
	"Access-Control-Allow-Methods: " + hdrCORSMeth[0] + "\r\n" +
	"Access-Control-Allow-Origin: " + hdrAnyOrigin[0] + "\r\n" +
	"Access-Control-Max-Age: " + hdrCORSAge[0] + "\r\n" +
	"Cache-Control: " + hdrNoStore[0] + "\r\n" +
	"Content-Type: " + hdrJSON[0] + "\r\n"

// InternalErrorBody is the body of a 500 answer to a panic.
const InternalErrorBody = `{"error":{"code":"internal","message":"internal error"}}`
