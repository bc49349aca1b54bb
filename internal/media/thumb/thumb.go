// Package thumb makes the pictures of live rooms (issue 15, M7): GET
// /live/{room}.jpg (and .webp) is a recent frame of the stream, decoded by
// an ffmpeg child process from the GOP cache's latest key frame.
//
// Decoding happens only when someone asks, and at most once per room per
// Config.Every: answers in between are served from memory. Concurrent
// askers of a stale picture share one decode. When a session ends, its
// last picture (decoded once more from the last key frame if nobody had
// asked) is written to Config.Dir as the room's cover, which is what the
// URL serves while the room is offline.
package thumb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"roomcast/internal/media/flv"
	"roomcast/internal/media/hub"
)

// Formats served.
const (
	JPEG = "jpg"
	WebP = "webp"
)

// Config configures the thumbnailer. Zero values are documented per field.
type Config struct {
	// Every is the least time between two decodes of a room; 0 means 10 s.
	Every time.Duration
	// Dir keeps the covers of ended sessions ({room}.jpg); "" keeps them in
	// memory only.
	Dir string
	// FFmpeg is the ffmpeg binary; "" means "ffmpeg" on PATH. When it is
	// missing, thumbnails answer 503 and nothing else changes.
	FFmpeg string
	// Width bounds the picture's width (scaled down, never up); 0 means 640.
	Width int
	// Timeout bounds one decode; 0 means 10 s.
	Timeout time.Duration
}

// Streams is what the thumbnailer reads: the live stream of a room.
type Streams interface {
	Stream(room string) *hub.Stream
}

// Thumbnailer serves and keeps room pictures.
type Thumbnailer struct {
	cfg     Config
	streams Streams
	allow   func(room string, r *http.Request) error
	log     *slog.Logger
	probe   sync.Once
	webp    bool // ffmpeg has libwebp; set by probe
	ffmpeg  bool // the binary runs; set by probe

	mu     sync.Mutex
	rooms  map[string]*entry // guarded by mu
	closed bool              // guarded by mu
	done   chan struct{}
	wg     sync.WaitGroup
}

// entry is one room's latest picture. dec serialises decodes of the room.
type entry struct {
	dec sync.Mutex

	mu      sync.Mutex
	session uint64    // stream id the picture comes from; guarded by mu
	at      time.Time // when it was decoded; guarded by mu
	img     map[string][]byte
}

// New returns a thumbnailer reading streams. allow, when not nil, checks
// a request's right to see the room (signed play URLs).
func New(cfg Config, streams Streams, allow func(room string, r *http.Request) error, log *slog.Logger) *Thumbnailer {
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Second
	}
	if cfg.FFmpeg == "" {
		cfg.FFmpeg = "ffmpeg"
	}
	if cfg.Width <= 0 {
		cfg.Width = 640
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Thumbnailer{cfg: cfg, streams: streams, allow: allow, log: log, rooms: map[string]*entry{}, done: make(chan struct{})}
}

// probed runs ffmpeg once, on first use, to learn whether it exists and
// can write WebP.
func (t *Thumbnailer) probed() *Thumbnailer {
	t.probe.Do(func() {
		if out, err := exec.Command(t.cfg.FFmpeg, "-hide_banner", "-encoders").Output(); err == nil {
			t.ffmpeg, t.webp = true, bytes.Contains(out, []byte(" libwebp "))
		}
	})
	return t
}

// StreamStarted implements hub.Observer: when the session ends, its last
// picture becomes the room's cover.
func (t *Thumbnailer) StreamStarted(s *hub.Stream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		select {
		case <-s.Done():
			t.keepCover(s)
		case <-t.done:
		}
	}()
}

// Close stops watching sessions.
func (t *Thumbnailer) Close() {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.done)
	}
	t.mu.Unlock()
	t.wg.Wait()
}

func (t *Thumbnailer) entry(room string) *entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.rooms[room]
	if e == nil {
		e = &entry{}
		t.rooms[room] = e
	}
	return e
}

// keepCover stores the ended session's last picture as the room's cover.
func (t *Thumbnailer) keepCover(s *hub.Stream) {
	e := t.entry(s.Room())
	img, _ := t.picture(context.Background(), e, s, JPEG, true)
	if img == nil || t.cfg.Dir == "" {
		return
	}
	// The room's cover, and this session's (named by its end, for the
	// replay list).
	sessionDir := filepath.Join(t.cfg.Dir, s.Room())
	ended := time.Now().UnixMilli()
	for _, p := range []string{filepath.Join(t.cfg.Dir, s.Room()+".jpg"), filepath.Join(sessionDir, strconv.FormatInt(ended, 10)+".jpg")} {
		if err := writeFile(p, img); err != nil {
			t.log.Warn("thumbnail: cover", "room", s.Room(), "err", err)
		}
	}
	prune(sessionDir, maxSessionCovers)
}

// maxSessionCovers bounds the covers kept per room (the newest).
const maxSessionCovers = 200

func writeFile(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// sessionCovers lists a room's session covers by end time (ms), oldest first.
func sessionCovers(dir string) []int64 {
	ents, _ := os.ReadDir(dir)
	var out []int64
	for _, e := range ents {
		if ms, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ".jpg"), 10, 64); err == nil && strings.HasSuffix(e.Name(), ".jpg") {
			out = append(out, ms)
		}
	}
	slices.Sort(out)
	return out
}

func prune(dir string, keep int) {
	all := sessionCovers(dir)
	for len(all) > keep {
		os.Remove(filepath.Join(dir, strconv.FormatInt(all[0], 10)+".jpg"))
		all = all[1:]
	}
}

// SessionCover names the cover of room's session that ran from start to
// end: the last picture kept when one of its streams ended. ok is false
// when there is none.
func (t *Thumbnailer) SessionCover(room string, start, end time.Time) (ms int64, ok bool) {
	if t.cfg.Dir == "" {
		return 0, false
	}
	lo, hi := start.UnixMilli(), end.Add(time.Minute).UnixMilli() // written just after the stream ended
	all := sessionCovers(filepath.Join(t.cfg.Dir, room))
	for i := len(all) - 1; i >= 0; i-- {
		if all[i] >= lo && all[i] <= hi {
			return all[i], true
		}
	}
	return 0, false
}

// picture returns the room's picture in format from session s, decoding a
// new one when the kept one is older than Every (or from another session)
// — or, with final, when none was made from this session yet.
func (t *Thumbnailer) picture(ctx context.Context, e *entry, s *hub.Stream, format string, final bool) ([]byte, error) {
	e.dec.Lock()
	defer e.dec.Unlock()
	e.mu.Lock()
	img, same, fresh := e.img[format], e.session == s.ID(), time.Since(e.at) < t.cfg.Every
	e.mu.Unlock()
	if img != nil && same && (fresh || final) {
		return img, nil
	}
	cfg, key, ok := s.KeyFrame()
	if !ok {
		if img != nil && same {
			return img, nil
		}
		return nil, errNoPicture
	}
	out, err := t.decode(ctx, cfg, key, format)
	if err != nil {
		t.log.Debug("thumbnail: decode", "room", s.Room(), "err", err)
		if img != nil && same {
			return img, nil // a slightly older picture beats none
		}
		return nil, err
	}
	e.mu.Lock()
	if e.session != s.ID() || e.img == nil {
		e.img = map[string][]byte{}
	}
	e.session, e.at = s.ID(), time.Now()
	e.img[format] = out
	e.mu.Unlock()
	return out, nil
}

var errNoPicture = errors.New("no key frame yet")

// decode runs ffmpeg on a two-tag FLV (sequence header, key frame) and
// returns one picture.
func (t *Thumbnailer) decode(ctx context.Context, cfg, key *hub.Frame, format string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	var in bytes.Buffer
	in.Write([]byte{'F', 'L', 'V', 1, 0x01, 0, 0, 0, 9})
	in.Write([]byte{0, 0, 0, 0})
	in.Write(cfg.Tag)
	in.Write(key.Tag)
	enc := []string{"-c:v", "mjpeg", "-q:v", "5", "-f", "image2"}
	if format == WebP {
		enc = []string{"-c:v", "libwebp", "-quality", "70", "-f", "webp"}
	}
	args := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-f", "flv", "-i", "pipe:0",
		"-frames:v", "1", "-vf", "scale='min(" + strconv.Itoa(t.cfg.Width) + ",iw)':-2", "-pix_fmt", pixFmt(format)}, enc...)
	args = append(args, "pipe:1")
	cmd := exec.CommandContext(ctx, t.cfg.FFmpeg, args...)
	cmd.Stdin = &in
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ffmpeg: %w: %s", err, bytes.TrimSpace(errOut.Bytes()))
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("ffmpeg: no picture: %s", bytes.TrimSpace(errOut.Bytes()))
	}
	return out.Bytes(), nil
}

func pixFmt(format string) string {
	if format == WebP {
		return "yuv420p"
	}
	return "yuvj420p"
}

// Serve answers GET /live/{room}.{jpg,webp}: the live picture, else the
// room's cover, else 404.
func (t *Thumbnailer) Serve(w http.ResponseWriter, r *http.Request, room, format string) {
	if t.allow != nil {
		if err := t.allow(room, r); err != nil {
			writeErr(w, http.StatusForbidden, "forbidden", err.Error())
			return
		}
	}
	if format == WebP && !t.probed().webp {
		writeErr(w, http.StatusNotFound, "not_found", "this server's ffmpeg has no WebP encoder; use /live/"+room+".jpg")
		return
	}
	if c := r.URL.Query().Get("cover"); c != "" { // a session's cover (SessionCover)
		ms, err := strconv.ParseInt(c, 10, 64)
		img, rerr := os.ReadFile(filepath.Join(t.cfg.Dir, room, strconv.FormatInt(ms, 10)+".jpg"))
		if err != nil || rerr != nil || t.cfg.Dir == "" || format != JPEG {
			writeErr(w, http.StatusNotFound, "not_found", "no such cover")
			return
		}
		writeImage(w, r, img, format, time.Hour)
		return
	}
	if s := t.streams.Stream(room); s != nil {
		img, err := t.picture(r.Context(), t.entry(room), s, format, false)
		if err == nil {
			writeImage(w, r, img, format, t.cfg.Every)
			return
		}
		if !errors.Is(err, errNoPicture) && !t.probed().ffmpeg {
			writeErr(w, http.StatusServiceUnavailable, "unavailable", "thumbnails need ffmpeg, which is not installed on the server")
			return
		}
	}
	if img := t.cover(room, format); img != nil {
		writeImage(w, r, img, format, t.cfg.Every)
		return
	}
	writeErr(w, http.StatusNotFound, "not_found", "room "+room+" has no picture yet")
}

// cover is the room's last picture: kept in memory, or on disk (JPEG).
func (t *Thumbnailer) cover(room, format string) []byte {
	t.mu.Lock()
	e := t.rooms[room]
	t.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		img := e.img[format]
		e.mu.Unlock()
		if img != nil {
			return img
		}
	}
	if format != JPEG || t.cfg.Dir == "" {
		return nil
	}
	img, err := os.ReadFile(filepath.Join(t.cfg.Dir, room+".jpg"))
	if err != nil {
		return nil
	}
	return img
}

func writeImage(w http.ResponseWriter, r *http.Request, img []byte, format string, every time.Duration) {
	h := w.Header()
	flv.SetCORS(h)
	h.Set("Content-Type", map[string]string{JPEG: "image/jpeg", WebP: "image/webp"}[format])
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(max(1, int(every/time.Second)/2)))
	h.Set("Content-Length", strconv.Itoa(len(img)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(img)
	}
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	flv.SetCORS(w.Header())
	flv.WriteError(w, status, code, msg)
}

// Version names room's current picture, for cache-busting URLs: for a
// live room with a key frame, the current Every period; for an offline
// room with a cover, the cover's time. ok is false when the room has no
// picture (a request would answer 404).
func (t *Thumbnailer) Version(room string) (v int64, ok bool) {
	if s := t.streams.Stream(room); s != nil && t.probed().ffmpeg {
		if _, _, has := s.KeyFrame(); has {
			return time.Now().UnixNano() / int64(t.cfg.Every), true
		}
	}
	t.mu.Lock()
	e := t.rooms[room]
	t.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		at, has := e.at, e.img[JPEG] != nil
		e.mu.Unlock()
		if has {
			return at.Unix(), true
		}
	}
	if t.cfg.Dir == "" {
		return 0, false
	}
	fi, err := os.Stat(filepath.Join(t.cfg.Dir, room+".jpg"))
	if err != nil {
		return 0, false
	}
	return fi.ModTime().Unix(), true
}
