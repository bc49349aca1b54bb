// Package livego serves livego's HTTP control API, so the steps of seed 000
// (and scripts written for livego) work unchanged against roomcast:
//
//	GET /control/get?room=NAME     → {"status":200,"data":"STREAM_KEY"} (creates the room if needed)
//	GET /control/reset?room=NAME   → {"status":200,"data":"NEW_KEY"}    (the old key stops working)
//	GET /control/delete?room=NAME  → {"status":200,"data":"ok"}         (deletes the room, ends its stream)
//	GET /stat/livestat[?room=NAME] → {"status":200,"data":{"publishers":[…],"players":[…]}}
//
// POST works too. Unlike livego, keys live in the room registry and
// survive a restart.
//
// # Access
//
// The endpoints are admin-only. A request passes with the admin key as
// "Authorization: Bearer KEY" or as the query parameter "key=KEY" (for
// curl one-liners like livego's; prefer the header, query strings end up in
// logs). When no admin key is configured (Config.AdminKey == ""), only
// clients connecting from a loopback address (127.0.0.0/8, ::1) are allowed
// — X-Forwarded-For is not trusted.
//
// # Errors
//
// Errors keep livego's shape and add roomcast's, with the HTTP status
// of the error code: {"status":403,"data":"forbidden","error":{"code":"forbidden","message":"…"}}.
package livego

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/errs"
	"roomcast/internal/media"
	"roomcast/internal/room"
)

// Rooms is what the control API needs from the room registry
// (*room.Registry).
type Rooms interface {
	Ensure(ctx context.Context, id string) (room.Room, error)
	ResetKey(ctx context.Context, id string) (string, error)
	Delete(ctx context.Context, id string) error
}

// Streams is what /stat/livestat and /control/delete need from the media
// server (*media.Server).
type Streams interface {
	Sessions() []media.Session
	Kick(room string) bool
}

// Config configures the handler.
type Config struct {
	// AdminKey protects the endpoints; "" allows loopback clients only.
	AdminKey string
	// LoopbackOpen also lets loopback clients in without the key: roomcast
	// sets it when the operator configured no admin key (the key is then
	// generated), so livego's documented local curl steps work unchanged.
	LoopbackOpen bool
	// RTMPPort is the port shown in livestat URLs; "" means "1935".
	RTMPPort string
	// Timeout bounds each registry call; 0 means 5 s.
	Timeout time.Duration
}

// Handler serves the livego-compatible endpoints. Mount it on "/control/"
// and "/stat/".
type Handler struct {
	cfg     Config
	rooms   Rooms
	streams Streams
	log     *slog.Logger
}

// New returns the handler. streams may be nil (no media: livestat is empty).
func New(cfg Config, rooms Rooms, streams Streams, log *slog.Logger) *Handler {
	if cfg.RTMPPort == "" {
		cfg.RTMPPort = "1935"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &Handler{cfg: cfg, rooms: rooms, streams: streams, log: log.With("component", "livego")}
}

type reply struct {
	Status int     `json:"status"`
	Data   any     `json:"data"`
	Error  *apiErr `json:"error,omitempty"`
}

type apiErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func write(w http.ResponseWriter, status int, data any, e *errs.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	r := reply{Status: status, Data: data}
	if e != nil {
		r.Error = &apiErr{Code: e.Code, Message: e.Message}
	}
	_ = json.NewEncoder(w).Encode(r)
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	e := errs.From(err)
	status := errs.Status(err)
	if status >= 500 {
		h.log.Error("livego control failed", "err", err)
	}
	write(w, status, e.Code, e)
}

// allowed applies the access rule described in the package doc.
func (h *Handler) allowed(r *http.Request) bool {
	if h.cfg.AdminKey == "" || (h.cfg.LoopbackOpen && isLoopback(r)) {
		return isLoopback(r)
	}
	key := auth.BearerToken(r.Header.Get("Authorization"))
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	return auth.CheckKey(key, h.cfg.AdminKey)
}

// ServeHTTP routes the livego endpoints.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		h.fail(w, errs.New(errs.Method, "use GET or POST"))
		return
	}
	if !h.allowed(r) {
		msg := "admin key required (Authorization: Bearer KEY or ?key=KEY)"
		if h.cfg.AdminKey == "" {
			msg = "only loopback clients may use the control API when no admin key is set"
		}
		h.fail(w, errs.New(errs.Forbidden, msg))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	name := r.FormValue("room")
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case "/control/get":
		if name == "" {
			h.fail(w, errs.New(errs.BadRequest, "url: /control/get?room=<ROOM_NAME>"))
			return
		}
		rm, err := h.rooms.Ensure(ctx, name)
		if err != nil {
			h.fail(w, err)
			return
		}
		write(w, http.StatusOK, rm.StreamKey, nil)
	case "/control/reset":
		if name == "" {
			h.fail(w, errs.New(errs.BadRequest, "url: /control/reset?room=<ROOM_NAME>"))
			return
		}
		if _, err := h.rooms.Ensure(ctx, name); err != nil {
			h.fail(w, err)
			return
		}
		key, err := h.rooms.ResetKey(ctx, name)
		if err != nil {
			h.fail(w, err)
			return
		}
		write(w, http.StatusOK, key, nil)
	case "/control/delete":
		if name == "" {
			h.fail(w, errs.New(errs.BadRequest, "url: /control/delete?room=<ROOM_NAME>"))
			return
		}
		if err := h.rooms.Delete(ctx, name); err != nil {
			h.fail(w, err)
			return
		}
		if h.streams != nil {
			h.streams.Kick(name)
		}
		write(w, http.StatusOK, "ok", nil)
	case "/stat/livestat":
		write(w, http.StatusOK, h.liveStat(r, name), nil)
	default:
		h.fail(w, errs.New(errs.NotFound, "unknown livego endpoint"))
	}
}

// Stream is one entry of livestat, in livego's shape plus roomcast fields.
type Stream struct {
	Key             string    `json:"key"` // "live/ROOM"
	URL             string    `json:"url"`
	StreamID        uint32    `json:"stream_id"`
	VideoTotalBytes uint64    `json:"video_total_bytes"`
	VideoSpeed      uint64    `json:"video_speed"` // kbit/s, average since the session started
	AudioTotalBytes uint64    `json:"audio_total_bytes"`
	AudioSpeed      uint64    `json:"audio_speed"`
	Room            string    `json:"room"`
	Protocol        string    `json:"protocol"`
	RemoteAddr      string    `json:"remote_addr"`
	Since           time.Time `json:"since"`
}

// LiveStat is livestat's data.
type LiveStat struct {
	Publishers []Stream `json:"publishers"`
	Players    []Stream `json:"players"`
}

func (h *Handler) liveStat(r *http.Request, room string) LiveStat {
	st := LiveStat{Publishers: []Stream{}, Players: []Stream{}}
	if h.streams == nil {
		return st
	}
	host := r.Host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	now := time.Now()
	for _, s := range h.streams.Sessions() {
		if room != "" && s.Room != room {
			continue
		}
		secs := now.Sub(s.Since).Seconds()
		speed := func(b uint64) uint64 {
			if secs <= 0 {
				return 0
			}
			return uint64(float64(b) * 8 / 1000 / secs)
		}
		e := Stream{
			Key: "live/" + s.Room, StreamID: uint32(s.ID), Room: s.Room, Protocol: s.Protocol, RemoteAddr: s.Remote,
			VideoTotalBytes: s.VideoBytes, VideoSpeed: speed(s.VideoBytes),
			AudioTotalBytes: s.AudioBytes, AudioSpeed: speed(s.AudioBytes), Since: s.Since.UTC(),
		}
		switch s.Protocol {
		case "flv":
			e.URL = "http://" + r.Host + "/live/" + s.Room + ".flv"
		default:
			e.URL = "rtmp://" + net.JoinHostPort(host, h.cfg.RTMPPort) + "/live/" + s.Room
		}
		if s.Publisher {
			st.Publishers = append(st.Publishers, e)
		} else {
			st.Players = append(st.Players, e)
		}
	}
	return st
}

// isLoopback reports whether the request comes from 127.0.0.0/8 or ::1
// (X-Forwarded-For is not trusted).
func isLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
