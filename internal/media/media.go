// Package media is roomcast's live video service (issue 3, M1–M5, M7, M9):
// RTMP ingest with per-room stream keys, and RTMP, HTTP-FLV and HLS
// playback from one ingest, with an instant first frame from the GOP cache.
//
// It is the one entry point the composition root wires:
//
//	srv, err := media.New(media.Config{…}, rooms, logger, prometheus.DefaultRegisterer)
//	srv.Start(ctx)                         // listens for RTMP
//	mux.Handle("/live/", srv.HTTPHandler()) // HTTP-FLV and HLS
//	info, ok := srv.StreamInfo(roomID)      // GET /api/rooms/{id}/stream
//	srv.Shutdown(ctx)                       // ends every stream cleanly
//
// Layout: hub (streams, GOP cache, readers), rtmp, flv, hls (protocol
// servers), flvtag (FLV/AMF0 codec, shared with tests and the load
// generator), access (signed URLs, webhooks). This package only composes
// them; it does not import the room, gateway or message packages — it
// consumes the small Rooms interface.
package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/media/access"
	"roomcast/internal/media/egress"
	"roomcast/internal/media/flv"
	"roomcast/internal/media/hls"
	"roomcast/internal/media/hub"
	"roomcast/internal/media/rtmp"
	"roomcast/internal/media/thumb"
)

// Rooms is what media needs from the room registry (*room.Registry
// satisfies it): publish auth, play checks and the live lifecycle.
type Rooms = hub.Rooms

// Info is a stream's statistics, JSON-ready for GET /api/rooms/{id}/stream.
type Info = hub.Info

// Viewers counts viewers per protocol.
type Viewers = hub.Viewers

// Session is one publisher or player (for /stat/livestat).
type Session = hub.Session

// Config configures the media server. The fields mirror roomcast's flags;
// zero values are documented per field.
type Config struct {
	// RTMP is the RTMP listen address (--rtmp, default ":1935"); "" disables
	// RTMP ingest and play.
	RTMP string
	// GOPCache starts new viewers from the cached GOP (--gop-cache, default
	// true). The zero value false disables it: viewers wait for the next
	// key frame.
	GOPCache bool
	// PublishTakeover lets a second publisher replace the first; false
	// refuses it (NetStream.Publish.BadName).
	PublishTakeover bool
	// PlaySignKey, when set, requires signed play URLs on FLV, HLS and RTMP
	// (see package access for the exact scheme); "" means open.
	PlaySignKey string
	// Webhook URLs (POST JSON); "" disables each. HookTimeout 0 means 5 s.
	HookPublish   string
	HookUnpublish string
	HookPlay      string
	// HookRecordDone is POSTed when a session's recording is complete.
	HookRecordDone string
	HookTimeout    time.Duration
	// HLSLowLatency serves Low-Latency HLS (fMP4 parts) instead of MPEG-TS.
	HLSLowLatency bool
	// HLSSegment is the target segment duration; 0 means 1 s.
	HLSSegment time.Duration
	// HLSSegments is the number of segments per playlist; 0 means 7.
	HLSSegments int
	// HLSEndedTTL keeps an ended stream's playlist (with ENDLIST); 0 means 30 s.
	HLSEndedTTL time.Duration

	// Access is the play checker to use; nil builds one from the fields
	// above (NewAccess).
	Access *access.Checker

	// Hub tuning; zero means the hub defaults (see hub.Config).
	RingBytes  int
	RingFrames int
	MaxLag     time.Duration
	// WriteTimeout drops a viewer whose socket does not drain for this
	// long; 0 means 10 s.
	WriteTimeout time.Duration
	// BatchDelay is the longest a frame waits for its FLV/RTMP viewers'
	// next write (package egress): the stream's shared writer writes when
	// the oldest unsent frame has waited this long, every viewer's queued
	// frames in one writev per viewer, so a stream costs a few wake-ups per
	// batch and a viewer one syscall per ~(BatchDelay + the gap to the next
	// frame) instead of one per frame. The first write (the GOP cache) is
	// never held, and a key frame or hub.FlushBytes queued ends the hold at
	// once. 0 (or negative) writes every frame at once (batching off);
	// --media-batch defaults to 40 ms.
	BatchDelay time.Duration

	// Thumbnails (GET /live/{room}.jpg, .webp): ThumbnailEvery is the least
	// time between two decodes of a room (0 means 10 s); CoverDir keeps the
	// last picture of ended sessions ("" keeps covers in memory only).
	ThumbnailEvery time.Duration
	CoverDir       string
	// FFmpeg is the ffmpeg binary pictures are decoded with; "" means
	// "ffmpeg" on PATH.
	FFmpeg string

	// Observers are told about every stream that starts (e.g. the quality
	// ladder); nil means none.
	Observers []Observer
	// Renditions, when not nil, names the rendition rooms of a source room
	// (the quality ladder: "show" → "show_720p", …); GET /live/{room}.m3u8
	// then is a master playlist listing them. nil or an empty answer means
	// the room's own playlist.
	Renditions func(room string) []string
}

// NewAccess builds the play checker (signed URLs, webhooks) of cfg, for
// callers that share it with media (the recorder's VOD).
func NewAccess(cfg Config, log *slog.Logger) *access.Checker {
	return &access.Checker{
		SignKey: cfg.PlaySignKey, HookPublish: cfg.HookPublish, HookUnpublish: cfg.HookUnpublish,
		HookPlay: cfg.HookPlay, HookRecordDone: cfg.HookRecordDone, HookTimeout: cfg.HookTimeout, Log: log,
		Client: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}
}

// Observer is told about streams that start.
type Observer = hub.Observer

// Server is the media service.
type Server struct {
	cfg   Config
	log   *slog.Logger
	hub   *hub.Manager
	out   *egress.Writers
	acc   *access.Checker
	rtmp  *rtmp.Server // nil when RTMP is disabled
	flv   *flv.Handler
	hls   *hls.Server
	thumb *thumb.Thumbnailer
	http  http.Handler
	start bool
}

// New builds the media server. reg may be nil (metrics not exported).
func New(cfg Config, rooms Rooms, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if rooms == nil {
		return nil, errors.New("media: nil Rooms")
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "media")
	met, err := hub.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("media: metrics: %w", err)
	}
	m := hub.NewManager(hub.Config{
		GOPCache: cfg.GOPCache, PublishTakeover: cfg.PublishTakeover,
		RingBytes: cfg.RingBytes, RingFrames: cfg.RingFrames, MaxLag: cfg.MaxLag,
	}, rooms, log, met)
	if reg != nil {
		if err := reg.Register(m.Collector()); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("media: metrics: %w", err)
			}
		}
	}
	acc := cfg.Access
	if acc == nil {
		acc = NewAccess(cfg, log)
	}
	cfg.BatchDelay = max(cfg.BatchDelay, 0)
	out := egress.New(egress.Config{Delay: cfg.BatchDelay}, met)
	s := &Server{cfg: cfg, log: log, hub: m, out: out, acc: acc}
	s.flv = flv.New(flv.Config{WriteTimeout: cfg.WriteTimeout}, m, out, acc, log)
	s.hls = hls.New(hls.Config{
		LowLatency: cfg.HLSLowLatency, SegmentDuration: cfg.HLSSegment,
		SegmentCount: cfg.HLSSegments, EndedTTL: cfg.HLSEndedTTL,
	}, m, acc, log)
	s.thumb = thumb.New(thumb.Config{Every: cfg.ThumbnailEvery, Dir: cfg.CoverDir, FFmpeg: cfg.FFmpeg}, m,
		func(room string, r *http.Request) error { return acc.CheckSignature(room, r.URL.Query()) }, log)
	m.AddObserver(s.thumb)
	for _, o := range cfg.Observers {
		m.AddObserver(o)
	}
	if cfg.RTMP != "" {
		s.rtmp = rtmp.New(rtmp.Config{Addr: cfg.RTMP, WriteTimeout: cfg.WriteTimeout}, m, out, rooms, acc, log)
	}
	s.http = http.HandlerFunc(s.serveLive)
	return s, nil
}

// Start listens for RTMP (when configured). ctx is used only for the
// listen; use Shutdown to stop.
func (s *Server) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.rtmp != nil {
		if err := s.rtmp.Start(); err != nil {
			return fmt.Errorf("media: %w", err)
		}
	}
	s.start = true
	return nil
}

// RTMPAddr is the RTMP listener's address, or nil.
func (s *Server) RTMPAddr() net.Addr {
	if s.rtmp == nil || !s.start {
		return nil
	}
	return s.rtmp.Addr()
}

// Shutdown ends every stream cleanly — publishers are disconnected, rooms
// marked ended, FLV responses terminated, RTMP players sent StreamEOF, HLS
// muxers closed — and waits for all media goroutines. It gives up waiting
// for background webhook calls when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.rtmp != nil {
		err = s.rtmp.Close()
	}
	s.hub.Close()
	s.flv.Close()
	s.out.Close() // after its viewers' servers
	s.hls.Close()
	s.thumb.Close()
	done := make(chan struct{})
	go func() {
		s.acc.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("media: waiting for webhooks: %w", ctx.Err())
		}
	}
	if tr, ok := s.acc.Client.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
	return err
}

// Close is Shutdown with a 10 s bound.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(ctx)
}

// StreamInfo returns room's stream statistics; false when it is not live
// (the Info then has only Room set and Live false, ready to serve as is).
func (s *Server) StreamInfo(room string) (Info, bool) { return s.hub.Info(room) }

// Sessions lists publishers and players (livego's /stat/livestat).
func (s *Server) Sessions() []Session { return s.hub.Sessions() }

// Kick disconnects room's publisher (e.g. the room was deleted); it
// reports whether there was one.
func (s *Server) Kick(room string) bool { return s.hub.Kick(room) }

// SignPlayQuery returns "expires=…&sign=…" for room, valid for ttl, or ""
// when signed URLs are off. Append it to any play URL of the room.
func (s *Server) SignPlayQuery(room string, ttl time.Duration) string {
	if s.cfg.PlaySignKey == "" {
		return ""
	}
	return access.SignedQuery(s.cfg.PlaySignKey, room, time.Now(), ttl)
}

// signRoom signs play URLs of other rooms (the renditions' URIs in a
// master playlist); nil when play URLs are not signed.
func (s *Server) signRoom() func(room string) string {
	if s.cfg.PlaySignKey == "" {
		return nil
	}
	return func(room string) string { return s.SignPlayQuery(room, time.Hour) }
}

// PictureURL is the URL of room's picture (live thumbnail or cover), with
// a version for caches and a signature when play URLs are signed; "" when
// the room has none yet.
func (s *Server) PictureURL(room string) string {
	v, ok := s.thumb.Version(room)
	if !ok {
		return ""
	}
	return s.pictureURL(room, "v", v)
}

// pictureURL is /live/{room}.jpg?{param}={v}, signed when play URLs are.
func (s *Server) pictureURL(room, param string, v int64) string {
	u := "/live/" + room + ".jpg?" + param + "=" + strconv.FormatInt(v, 10)
	if q := s.SignPlayQuery(room, time.Hour); q != "" {
		u += "&" + q
	}
	return u
}

// Cue writes a cue into room's live stream (an FLV/RTMP script-data tag
// and an HLS EXT-X-DATERANGE) and returns the stream's clock there in ms;
// ok is false when the room is not live here.
func (s *Server) Cue(room, name string, data map[string]any) (videoMS int64, ok bool) {
	ms, ok, err := s.hub.Cue(room, name, data)
	if err != nil {
		s.log.Warn("media: cue", "room", room, "name", name, "err", err)
	}
	return ms, ok
}

// Hub is the media hub (recorders attach to it like viewers).
func (s *Server) Hub() *hub.Manager { return s.hub }

// Access is the play checker (signed URLs, webhooks), shared with VOD.
func (s *Server) Access() *access.Checker { return s.acc }

// SessionCoverURL is the URL of the cover of room's session that ran from
// start to end — its last picture — or, while live (end nil), the live
// picture; "" when there is none.
func (s *Server) SessionCoverURL(room string, start time.Time, end *time.Time) string {
	if end == nil {
		return s.PictureURL(room)
	}
	ms, ok := s.thumb.SessionCover(room, start, *end)
	if !ok {
		return ""
	}
	return s.pictureURL(room, "cover", ms)
}

// HTTPHandler serves everything under /live/:
//
//	GET /live/{room}.flv     HTTP-FLV
//	GET /live/{room}.m3u8    HLS playlist
//	GET /live/{room}.jpg     a recent picture (or the cover); .webp too
//	GET /live/{room}/{file}  HLS media playlists and segments
//	OPTIONS /live/…          CORS preflight
//
// Mount it at "/live/" on the main mux.
func (s *Server) HTTPHandler() http.Handler { return s.http }

func (s *Server) serveLive(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving media", "path", r.URL.Path, "panic", p)
		}
	}()
	rest, ok := strings.CutPrefix(r.URL.Path, "/live/")
	if !ok {
		flv.SetCORS(w.Header())
		flv.WriteError(w, http.StatusNotFound, "not_found", "not found")
		return
	}
	if r.Method == http.MethodOptions {
		flv.SetCORS(w.Header())
		w.Header().Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if room, file, ok := strings.Cut(rest, "/"); ok {
		if validRoom(room) && file != "" && !strings.Contains(file, "/") {
			s.hls.ServeFile(w, r, room, file)
			return
		}
	} else if room, ok := strings.CutSuffix(rest, ".flv"); ok && validRoom(room) {
		s.flv.Serve(w, r, room)
		return
	} else if room, ok := strings.CutSuffix(rest, ".m3u8"); ok && validRoom(room) {
		if s.cfg.Renditions != nil {
			if rs := s.cfg.Renditions(room); len(rs) > 0 {
				s.hls.ServeMaster(w, r, room, rs, s.signRoom())
				return
			}
		}
		s.hls.ServeIndex(w, r, room)
		return
	} else if room, ok := strings.CutSuffix(rest, ".jpg"); ok && validRoom(room) {
		s.thumb.Serve(w, r, room, thumb.JPEG)
		return
	} else if room, ok := strings.CutSuffix(rest, ".webp"); ok && validRoom(room) {
		s.thumb.Serve(w, r, room, thumb.WebP)
		return
	}
	flv.SetCORS(w.Header())
	flv.WriteError(w, http.StatusNotFound, "not_found", "use /live/{room}.flv or /live/{room}.m3u8")
}

// validRoom matches room ids (room.ValidID): 1–64 letters, digits, - or _,
// not starting with - or _.
func validRoom(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}
