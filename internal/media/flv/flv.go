// Package flv serves HTTP-FLV (M3): GET /live/{room}.flv streams the room's
// live FLV to flv.js, mpegts.js, ffmpeg or VLC, with CORS open for browser
// players.
//
// A response starts with the FLV header, onMetaData, the AVC/AAC sequence
// headers and the cached GOP from the latest key frame, all written at once
// in one writev (M5) — we do not wait for the next packet from the
// publisher — and then follows the live tags. Timestamps are rebased per
// viewer so the first frame is at 0 and the cache plays smoothly into the
// live part.
//
// Tag bodies are the hub's shared, pre-muxed bytes; the only per-viewer
// bytes are the 11-byte tag headers (rebased timestamps) and the HTTP chunk
// framing. For HTTP/1.x the connection is hijacked so that many tags go to
// the kernel in one writev, and after the first write the stream's shared
// writer (package egress) writes to it with the stream's other viewers;
// other transports (HTTP/2) fall back to ResponseWriter writes with a flush
// per batch, on the viewer's own goroutine.
//
// When the publisher leaves, the response ends cleanly: the chunked body
// is terminated ("0\r\n\r\n") and the connection closed.
package flv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"roomcast/internal/media/access"
	"roomcast/internal/media/egress"
	"roomcast/internal/media/flvtag"
	"roomcast/internal/media/hub"
)

// Config tunes the HTTP-FLV writer.
type Config struct {
	// WriteTimeout bounds one write to a viewer; a viewer that does not
	// drain its socket for this long is dropped. 0 means 10 s.
	WriteTimeout time.Duration
}

// Handler serves HTTP-FLV. Close ends every response it is serving.
type Handler struct {
	cfg Config
	m   *hub.Manager
	out *egress.Writers
	acc *access.Checker
	log *slog.Logger

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // running responses

	mu     sync.Mutex
	closed bool // guarded by mu
}

// New returns a Handler reading streams from m and writing them through out
// (batching is out's: --media-batch).
func New(cfg Config, m *hub.Manager, out *egress.Writers, acc *access.Checker, log *slog.Logger) *Handler {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Handler{cfg: cfg, m: m, out: out, acc: acc, log: log.With("component", "flv"), ctx: ctx, cancel: cancel}
}

// Close ends every running response cleanly and waits for them.
func (h *Handler) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}

// SetCORS sets the CORS headers browser players need.
func SetCORS(hd http.Header) {
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	hd.Set("Access-Control-Allow-Headers", "Range, Origin, Accept, Content-Type")
	hd.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range")
}

// WriteError writes roomcast's JSON error shape.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// Serve streams room to the client.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, room string) {
	SetCORS(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		WriteError(w, http.StatusServiceUnavailable, "unavailable", "media server is shutting down")
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()

	met := h.m.Metrics()
	q := r.URL.Query()
	if err := h.acc.CheckSignature(room, q); err != nil {
		met.Refused.WithLabelValues("play", "signature").Inc()
		WriteError(w, http.StatusForbidden, "forbidden", err.Error())
		return
	}
	ev := access.Event{Room: room, Stream: "live/" + room, Protocol: hub.ProtoFLV, RemoteAddr: r.RemoteAddr, Query: r.URL.RawQuery}
	if err := h.acc.OnPlay(r.Context(), ev); err != nil {
		met.Refused.WithLabelValues("play", "hook").Inc()
		WriteError(w, http.StatusForbidden, "forbidden", "refused by on_play hook")
		return
	}
	rd, st, err := h.m.Play(r.Context(), room, hub.ProtoFLV, r.RemoteAddr)
	if err != nil {
		switch {
		case errors.Is(err, hub.ErrNoRoom):
			WriteError(w, http.StatusNotFound, "room_not_found", "no such room")
		case errors.Is(err, hub.ErrNotLive):
			met.Refused.WithLabelValues("play", "not_live").Inc()
			WriteError(w, http.StatusNotFound, "not_found", "room "+room+" is not live")
		case errors.Is(err, context.Canceled):
		default:
			h.log.Error("play failed", "room", room, "err", err)
			WriteError(w, http.StatusInternalServerError, "internal", "internal error")
		}
		return
	}
	defer rd.Close()
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "video/x-flv")
		w.WriteHeader(http.StatusOK)
		return
	}
	var sink sink
	if r.ProtoMajor == 1 {
		if hs, err := hijack(w, r, h.cfg.WriteTimeout, flvtag.FileHeader(st.HasVideo, st.HasAudio)); err == nil {
			sink = hs
		}
	}
	if sink == nil {
		sink = &rwSink{w: w, rc: http.NewResponseController(w), timeout: h.cfg.WriteTimeout,
			tw: tagWriter{fileHeader: flvtag.FileHeader(st.HasVideo, st.HasAudio)}}
	}
	err = h.stream(r.Context(), sink, rd, st)
	switch {
	case err == nil, errors.Is(err, hub.ErrEnded), errors.Is(err, context.Canceled):
		sink.finish()
	case errors.Is(err, hub.ErrSlow):
		h.log.Info("slow viewer dropped", "room", room, "remote", r.RemoteAddr)
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			rd.Drop("write_timeout")
		}
		h.log.Debug("viewer gone", "room", room, "remote", r.RemoteAddr, "err", err)
	}
	sink.close()
}

// stream writes the start and then live frames until the stream ends, the
// client leaves, or the handler closes.
func (h *Handler) stream(reqCtx context.Context, sk sink, rd *hub.Reader, st hub.Start) error {
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	stop := context.AfterFunc(reqCtx, cancel)
	defer stop()
	// On shutdown, a viewer stuck in a write gets a short deadline instead
	// of the full WriteTimeout.
	stopAbort := context.AfterFunc(h.ctx, sk.abort)
	defer stopAbort()
	if gone := sk.gone(); gone != nil {
		stopGone := context.AfterFunc(gone, cancel)
		defer stopGone()
	}

	return h.out.Serve(ctx, rd, sk, st.Config)
}

// tagWriter builds the per-viewer bytes of a batch: chunk framing and tag
// headers with rebased timestamps. The tag bodies are shared.
type tagWriter struct {
	fileHeader []byte
	hdr        []byte      // scratch for headers, reused
	iov        [][]byte    // writev vector backing, reused
	bufs       net.Buffers // the vector handed to WriteTo (it consumes it)
}

// build returns the vector for frames (with HTTP chunk framing when
// chunked) and the number of FLV bytes in it.
func (w *tagWriter) build(rd *hub.Reader, frames []*hub.Frame, withFileHeader, chunked bool) (net.Buffers, int) {
	need := 16 + 2 + len(frames)*flvtag.HeaderSize
	if cap(w.hdr) < need {
		w.hdr = make([]byte, 0, need*2)
	}
	hdr, iov := w.hdr[:0], w.iov[:0]
	size := 0
	if withFileHeader {
		size += len(w.fileHeader)
	}
	for _, f := range frames {
		size += len(f.Tag)
	}
	if chunked {
		hdr = strconv.AppendInt(hdr, int64(size), 16)
		hdr = append(hdr, '\r', '\n')
		iov = append(iov, hdr[:len(hdr):len(hdr)])
	}
	if withFileHeader {
		iov = append(iov, w.fileHeader)
	}
	for _, f := range frames {
		start := len(hdr)
		hdr = append(hdr, f.Tag[:flvtag.HeaderSize]...)
		flvtag.SetTimestamp(hdr[start:], rd.TS(f))
		iov = append(iov, hdr[start:len(hdr):len(hdr)], f.Tag[flvtag.HeaderSize:])
	}
	if chunked {
		start := len(hdr)
		hdr = append(hdr, '\r', '\n')
		iov = append(iov, hdr[start:])
	}
	w.hdr, w.iov = hdr, iov
	w.bufs = iov
	return w.bufs, size
}

// release drops the references to frame bodies of the last batch, so old
// frames can be freed while the viewer waits.
func (w *tagWriter) release() {
	clear(w.iov)
	w.iov = w.iov[:0]
}

// sink is where a response's bytes go.
type sink interface {
	egress.Out
	gone() context.Context // done when the client disconnects; nil if unknown
	abort()                // shutdown: bound the current and next writes to ~1 s
	finish()               // end the body cleanly
	close()
}

const abortGrace = time.Second

// hijackSink writes a hand-made HTTP/1.1 response on the raw connection.
type hijackSink struct {
	conn     net.Conn
	raw      syscall.RawConn // nil if conn has none
	timeout  time.Duration
	tw       tagWriter
	deadline time.Time   // current write deadline, refreshed when half used; owned by the writer
	aborted  atomic.Bool // set by abort: stop extending the deadline
	chunked  bool
	goneCtx  context.Context
	stop     context.CancelFunc
	readEnd  chan struct{}
}

func hijack(w http.ResponseWriter, r *http.Request, timeout time.Duration, fileHeader []byte) (*hijackSink, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack: %w", err)
	}
	chunked := r.ProtoAtLeast(1, 1)
	hd := w.Header().Clone()
	hd.Set("Content-Type", "video/x-flv")
	hd.Set("Cache-Control", "no-cache, no-store")
	hd.Set("Connection", "close")
	hd.Del("Content-Length")
	if chunked {
		hd.Set("Transfer-Encoding", "chunked")
	}
	proto := "HTTP/1.1"
	if !chunked {
		proto = "HTTP/1.0"
	}
	_, _ = brw.WriteString(proto + " 200 OK\r\n")
	_ = hd.Write(brw)
	_, _ = brw.WriteString("\r\n")
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := brw.Flush(); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("write response header: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &hijackSink{conn: conn, timeout: timeout, chunked: chunked, goneCtx: ctx, stop: cancel, readEnd: make(chan struct{})}
	s.tw.fileHeader = fileHeader
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.raw = rc
		}
	}
	go func() { // owned by the sink: ends when close() closes the connection
		defer close(s.readEnd)
		defer cancel()
		var b [512]byte
		_ = conn.SetReadDeadline(time.Time{})
		for {
			if _, err := conn.Read(b[:]); err != nil {
				return
			}
		}
	}()
	return s, nil
}

func (s *hijackSink) Build(rd *hub.Reader, frames []*hub.Frame, first bool) (net.Buffers, int) {
	return s.tw.build(rd, frames, first, s.chunked)
}

func (s *hijackSink) Write(bufs net.Buffers) error {
	if now := time.Now(); s.deadline.Sub(now) < s.timeout/2 && !s.aborted.Load() {
		s.deadline = now.Add(s.timeout)
		_ = s.conn.SetWriteDeadline(s.deadline)
	}
	_, err := bufs.WriteTo(s.conn)
	return err
}

func (s *hijackSink) Raw() (syscall.RawConn, *sync.Mutex) { return s.raw, nil }

func (s *hijackSink) gone() context.Context { return s.goneCtx }

func (s *hijackSink) abort() {
	s.aborted.Store(true)
	_ = s.conn.SetWriteDeadline(time.Now().Add(abortGrace))
}

func (s *hijackSink) finish() {
	if s.chunked {
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = s.conn.Write([]byte("0\r\n\r\n"))
	}
}

func (s *hijackSink) close() {
	_ = s.conn.Close()
	<-s.readEnd
	s.stop()
}

// rwSink writes through the ResponseWriter (HTTP/2, or when hijacking is
// not possible), copying a batch into one buffer per write.
type rwSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	tw      tagWriter
	aborted atomic.Bool
	started bool
	buf     []byte
}

func (s *rwSink) Build(rd *hub.Reader, frames []*hub.Frame, first bool) (net.Buffers, int) {
	return s.tw.build(rd, frames, first, false)
}

func (s *rwSink) Write(bufs net.Buffers) error {
	if !s.started {
		s.started = true
		hd := s.w.Header()
		hd.Set("Content-Type", "video/x-flv")
		hd.Set("Cache-Control", "no-cache, no-store")
		s.w.WriteHeader(http.StatusOK)
	}
	s.buf = s.buf[:0]
	for _, b := range bufs {
		s.buf = append(s.buf, b...)
	}
	clear(bufs)
	if !s.aborted.Load() {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	}
	if _, err := s.w.Write(s.buf); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return err
	}
	if cap(s.buf) > 4<<20 {
		s.buf = nil // do not pin a large GOP-sized buffer for the whole session
	}
	return nil
}

func (s *rwSink) Raw() (syscall.RawConn, *sync.Mutex) { return nil, nil }

func (s *rwSink) gone() context.Context { return nil }
func (s *rwSink) abort() {
	s.aborted.Store(true)
	_ = s.rc.SetWriteDeadline(time.Now().Add(abortGrace))
}
func (s *rwSink) finish() {}
func (s *rwSink) close()  {}
