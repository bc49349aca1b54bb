// Package hls serves HLS (M4) with one gohlslib/v2 Muxer per live room —
// not per viewer: the muxer is fed by one internal reader of the room's hub
// stream and every client is served from its segments.
//
//	GET /live/{room}.m3u8          multivariant playlist (URIs point below)
//	GET /live/{room}/{file}        media playlists, init files, segments, parts
//
// With Config.LowLatency the muxer runs the Low-Latency HLS variant (fMP4
// parts, blocking playlist reload); otherwise MPEG-TS segments (fMP4 for
// H.265, which MPEG-TS HLS does not carry). When the publisher goes away
// the playlists stay available for Config.EndedTTL with #EXT-X-ENDLIST
// appended, so players finish cleanly instead of waiting for more.
//
// Signed URLs: the query string of the first playlist request is carried
// by gohlslib into every URI it generates, so a signed URL stays valid for
// the playlists and segments it leads to; every request is checked.
package hls

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"roomcast/internal/media/access"
	"roomcast/internal/media/flv"
	"roomcast/internal/media/hub"
)

// Config configures HLS.
type Config struct {
	LowLatency bool
	// SegmentDuration is the minimum segment length (segments cut at key
	// frames); 0 means 1 s.
	SegmentDuration time.Duration
	// SegmentCount is the number of segments in a playlist; 0 means 7
	// (Low-Latency HLS needs at least 7).
	SegmentCount int
	// PartDuration is the LL-HLS part length; 0 means 200 ms.
	PartDuration time.Duration
	// EndedTTL is how long an ended stream's playlists (with ENDLIST)
	// stay available; 0 means 30 s.
	EndedTTL time.Duration
}

// Server muxes live rooms to HLS and serves the files.
type Server struct {
	cfg Config
	m   *hub.Manager
	acc *access.Checker
	log *slog.Logger

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // feeder goroutines

	mu     sync.Mutex
	muxers map[string]*muxer // room → newest muxer (live or ended); guarded by mu
	closed bool              // guarded by mu
}

type muxer struct {
	room     string
	stream   *hub.Stream
	mux      *gohlslib.Muxer
	video    *gohlslib.Track
	audio    *gohlslib.Track
	h264     bool
	replaced chan struct{} // closed when a newer muxer for the room exists

	mu    sync.Mutex
	ended bool        // publisher gone: playlists get ENDLIST; guarded by mu
	cues  []dateRange // newest last, at most maxCues; guarded by mu
}

// isEnded: the publisher is gone (the feeder may still be flushing).
func (mx *muxer) isEnded() bool {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return mx.ended || mx.stream.Ended()
}

// New returns a Server and registers it with m for stream starts.
func New(cfg Config, m *hub.Manager, acc *access.Checker, log *slog.Logger) *Server {
	if cfg.SegmentDuration <= 0 {
		cfg.SegmentDuration = time.Second
	}
	if cfg.SegmentCount <= 0 {
		cfg.SegmentCount = 7
	}
	if cfg.LowLatency && cfg.SegmentCount < 7 {
		cfg.SegmentCount = 7
	}
	if cfg.SegmentCount < 3 {
		cfg.SegmentCount = 3
	}
	if cfg.PartDuration <= 0 {
		cfg.PartDuration = 200 * time.Millisecond
	}
	if cfg.EndedTTL <= 0 {
		cfg.EndedTTL = 30 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, m: m, acc: acc, log: log.With("component", "hls"), ctx: ctx, cancel: cancel,
		muxers: map[string]*muxer{}}
	m.AddObserver(s)
	return s
}

// StreamStarted implements hub.Observer: it creates the room's muxer and
// the goroutine that feeds it.
func (s *Server) StreamStarted(st *hub.Stream) {
	tracks := st.Tracks()
	mx := &muxer{room: st.Room(), stream: st, replaced: make(chan struct{})}
	variant := gohlslib.MuxerVariantMPEGTS
	if tracks.Video != nil {
		switch tracks.Video.Codec {
		case "h264":
			mx.h264 = true
			mx.video = &gohlslib.Track{Codec: &codecs.H264{SPS: tracks.Video.SPS, PPS: tracks.Video.PPS}, ClockRate: 90000}
		case "h265":
			variant = gohlslib.MuxerVariantFMP4
			mx.video = &gohlslib.Track{Codec: &codecs.H265{VPS: tracks.Video.VPS, SPS: tracks.Video.SPS, PPS: tracks.Video.PPS}, ClockRate: 90000}
		}
	}
	if tracks.Audio != nil {
		mx.audio = &gohlslib.Track{Codec: &codecs.MPEG4Audio{Config: *tracks.Audio.Config}, ClockRate: tracks.Audio.Config.SampleRate}
	}
	if s.cfg.LowLatency {
		variant = gohlslib.MuxerVariantLowLatency
	}
	mux := &gohlslib.Muxer{
		Variant:            variant,
		SegmentCount:       s.cfg.SegmentCount,
		SegmentMinDuration: s.cfg.SegmentDuration,
		PartMinDuration:    s.cfg.PartDuration,
		SegmentMaxSize:     64 << 20,
		OnEncodeError: func(err error) {
			s.log.Debug("HLS encode error", "room", st.Room(), "err", err)
		},
	}
	for _, t := range []*gohlslib.Track{mx.video, mx.audio} {
		if t != nil {
			mux.Tracks = append(mux.Tracks, t)
		}
	}
	if err := mux.Start(); err != nil {
		s.log.Error("HLS muxer failed to start", "room", st.Room(), "err", err)
		return
	}
	mx.mux = mux
	rd, start, err := st.Attach(hub.ProtoInternal, "hls")
	if err != nil {
		mux.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		rd.Close()
		mux.Close()
		return
	}
	if old := s.muxers[mx.room]; old != nil {
		close(old.replaced)
	}
	s.muxers[mx.room] = mx
	s.wg.Add(1)
	s.mu.Unlock()
	go s.feed(mx, rd, start)
}

// feed writes the stream's frames into the muxer until the stream ends,
// then keeps the ended playlists for EndedTTL.
func (s *Server) feed(mx *muxer, rd *hub.Reader, start hub.Start) {
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in HLS muxer", "room", mx.room, "panic", r)
		}
		rd.Close()
		mx.mux.Close()
		s.mu.Lock()
		if s.muxers[mx.room] == mx {
			delete(s.muxers, mx.room)
		}
		s.mu.Unlock()
	}()
	var params [][]byte // current video parameter sets, put before each IDR
	for _, f := range start.Config {
		if f.Kind == hub.KindVideo {
			params = f.AU
		}
	}
	base := mx.stream.StartedAt()
	batch := make([]*hub.Frame, 0, 256)
	var err error
	for err == nil {
		batch, err = rd.Next(s.ctx, batch)
		for _, f := range batch {
			if f.Config {
				if f.Kind == hub.KindVideo {
					params = f.AU
				}
				continue
			}
			s.writeFrame(mx, f, params, base)
		}
		clear(batch)
		batch = batch[:0]
	}
	if !errors.Is(err, hub.ErrEnded) {
		return // shutting down, or the muxer could not keep up
	}
	mx.mu.Lock()
	mx.ended = true
	mx.mu.Unlock()
	t := time.NewTimer(s.cfg.EndedTTL)
	defer t.Stop()
	select {
	case <-t.C:
	case <-mx.replaced:
	case <-s.ctx.Done():
	}
}

func (s *Server) writeFrame(mx *muxer, f *hub.Frame, params [][]byte, base time.Time) {
	ntp := base.Add(f.PTS)
	var err error
	switch f.Kind {
	case hub.KindVideo:
		if mx.video == nil {
			return
		}
		au := f.AU
		if f.Key && len(params) > 0 {
			au = append(append(make([][]byte, 0, len(params)+len(au)), params...), au...)
		}
		pts := durationTo(f.PTS, 90000)
		if mx.h264 {
			err = mx.mux.WriteH264(mx.video, ntp, pts, au)
		} else {
			err = mx.mux.WriteH265(mx.video, ntp, pts, au)
		}
	case hub.KindAudio:
		if mx.audio == nil {
			return
		}
		err = mx.mux.WriteMPEG4Audio(mx.audio, ntp, durationTo(f.PTS, int64(mx.audio.ClockRate)), f.AU)
	case hub.KindCue:
		mx.addCue(f, base)
	}
	if err != nil {
		s.log.Debug("HLS write failed", "room", mx.room, "err", err)
	}
}

func durationTo(d time.Duration, rate int64) int64 {
	sec := int64(d / time.Second)
	rem := int64(d % time.Second)
	return sec*rate + rem*rate/int64(time.Second)
}

// Close stops every muxer and waits for the feeders.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

func (s *Server) lookup(room string) *muxer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.muxers[room]
}

// allow checks the method and the signature; it writes the error response
// and returns false when the request cannot be served.
func (s *Server) allow(w http.ResponseWriter, r *http.Request, room string) bool {
	flv.SetCORS(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		flv.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
		return false
	}
	if err := s.acc.CheckSignature(room, r.URL.Query()); err != nil {
		s.m.Metrics().Refused.WithLabelValues("play", "signature").Inc()
		flv.WriteError(w, http.StatusForbidden, "forbidden", err.Error())
		return false
	}
	return true
}

// find returns the room's muxer, or writes 404 and returns nil.
func (s *Server) find(w http.ResponseWriter, r *http.Request, room string) *muxer {
	mx := s.lookup(room)
	if mx == nil {
		flv.WriteError(w, http.StatusNotFound, "not_found", "room "+room+" is not live")
		return nil
	}
	mx.stream.NoteHLSClient(clientKey(r), time.Now())
	return mx
}

func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return host + "|" + r.UserAgent()
}

// ServeIndex serves GET /live/{room}.m3u8: the multivariant playlist with
// its URIs rewritten to /live/{room}/….
func (s *Server) ServeIndex(w http.ResponseWriter, r *http.Request, room string) {
	if !s.allow(w, r, room) {
		return
	}
	ev := access.Event{Room: room, Stream: "live/" + room, Protocol: hub.ProtoHLS, RemoteAddr: r.RemoteAddr, Query: r.URL.RawQuery}
	if err := s.acc.OnPlay(r.Context(), ev); err != nil {
		s.m.Metrics().Refused.WithLabelValues("play", "hook").Inc()
		flv.WriteError(w, http.StatusForbidden, "forbidden", "refused by on_play hook")
		return
	}
	mx := s.find(w, r, room)
	if mx == nil {
		return
	}
	rec := s.capture(mx, r, "index.m3u8", false)
	if rec.status != http.StatusOK {
		flv.WriteError(w, http.StatusServiceUnavailable, "unavailable", "stream has no HLS content yet")
		return
	}
	body := rewriteURIs(rec.body.Bytes(), url.PathEscape(room)+"/")
	writePlaylist(w, rec, body)
}

// ServeFile serves GET /live/{room}/{file}.
func (s *Server) ServeFile(w http.ResponseWriter, r *http.Request, room, file string) {
	if !s.allow(w, r, room) {
		return
	}
	mx := s.find(w, r, room)
	if mx == nil {
		return
	}
	if strings.HasSuffix(file, ".m3u8") && mx.isEnded() {
		rec := s.capture(mx, r, file, true)
		if rec.status != http.StatusOK {
			flv.WriteError(w, http.StatusNotFound, "not_found", "no such playlist")
			return
		}
		writePlaylist(w, rec, mx.withCues(endPlaylist(rec.body.Bytes())))
		return
	}
	if strings.HasSuffix(file, ".m3u8") && mx.hasCues() {
		rec := s.capture(mx, r, file, false)
		if rec.status != http.StatusOK {
			flv.WriteError(w, http.StatusNotFound, "not_found", "no such playlist")
			return
		}
		writePlaylist(w, rec, mx.withCues(rec.body.Bytes()))
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + file
	mx.mux.Handle(w, r2)
}

// capture runs the muxer's handler for file into a recorder. ended strips
// LL-HLS blocking parameters so an ended stream answers at once.
func (s *Server) capture(mx *muxer, r *http.Request, file string, ended bool) *recorder {
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + file
	if ended {
		q := r2.URL.Query()
		q.Del("_HLS_msn")
		q.Del("_HLS_part")
		q.Del("_HLS_skip")
		r2.URL.RawQuery = q.Encode()
	}
	rec := &recorder{hd: http.Header{}, status: http.StatusOK}
	mx.mux.Handle(rec, r2)
	if !rec.wrote {
		rec.status = http.StatusNotFound
	}
	return rec
}

func writePlaylist(w http.ResponseWriter, rec *recorder, body []byte) {
	for _, k := range []string{"Content-Type", "Cache-Control"} {
		if v := rec.hd.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// rewriteURIs prefixes every URI of a playlist (plain lines and URI="…"
// attributes) with prefix.
func rewriteURIs(pl []byte, prefix string) []byte {
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(pl), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "":
		case !strings.HasPrefix(t, "#"):
			line = prefix + line
		case strings.Contains(line, `URI="`):
			line = strings.ReplaceAll(line, `URI="`, `URI="`+prefix)
		}
		out.WriteString(line)
	}
	return out.Bytes()
}

// endPlaylist drops LL-HLS hints and appends #EXT-X-ENDLIST.
func endPlaylist(pl []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(pl), "\n") {
		if strings.HasPrefix(line, "#EXT-X-PRELOAD-HINT") || strings.HasPrefix(line, "#EXT-X-ENDLIST") {
			continue
		}
		out.WriteString(line)
	}
	if b := out.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
		out.WriteByte('\n')
	}
	out.WriteString("#EXT-X-ENDLIST\n")
	return out.Bytes()
}

// recorder captures a (small) playlist response.
type recorder struct {
	hd     http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.hd }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
