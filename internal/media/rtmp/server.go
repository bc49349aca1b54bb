// Package rtmp is roomcast's RTMP server (M1, M2): publishers push to
// rtmp://HOST:1935/live/STREAM_KEY, players pull rtmp://HOST:1935/live/ROOM.
//
// It is built on github.com/bluenviron/gortmplib v1.0.0, but only on its
// lower layers (pkg/handshake, pkg/message, pkg/amf0): the library's
// ServerConn answers "NetStream.Publish.Start" before the caller sees the
// stream key, so a wrong key could only be refused by dropping the
// connection. Running the connect/createStream/publish exchange here lets
// us check the key (and the on_publish hook, and whether the room already
// has a publisher) first and refuse with a proper onStatus error that OBS
// and ffmpeg show to the user. gortmplib still does the handshake, chunk
// parsing and message decoding, including Enhanced RTMP (H.265).
//
// Players are written without gortmplib's Writer: the hub's frames already
// hold the FLV tag body, which is the RTMP message payload, so each player
// only adds its own chunk headers (with its rebased timestamp) and passes
// the shared bodies to writev.
package rtmp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/bluenviron/gortmplib/pkg/message"

	"roomcast/internal/media/access"
	"roomcast/internal/media/egress"
	"roomcast/internal/media/hub"
)

// Config configures the RTMP server.
type Config struct {
	// Addr is the listen address, e.g. ":1935".
	Addr string
	// App is the application name in the URL; "" means "live".
	App string
	// HandshakeTimeout bounds the handshake and connect/publish/play
	// exchange; 0 means 10 s.
	HandshakeTimeout time.Duration
	// ReadTimeout is how long a publisher may stay silent; 0 means 10 s.
	ReadTimeout time.Duration
	// WriteTimeout is how long a write to a player may block; 0 means 10 s.
	WriteTimeout time.Duration
}

// Server accepts RTMP connections.
type Server struct {
	cfg   Config
	m     *hub.Manager
	out   *egress.Writers
	rooms hub.Rooms
	acc   *access.Checker
	log   *slog.Logger

	ln     net.Listener
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop and connection goroutines

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu
}

// New returns a Server; call Start to listen.
// Players are written through out (batching is out's: --media-batch).
func New(cfg Config, m *hub.Manager, out *egress.Writers, rooms hub.Rooms, acc *access.Checker, log *slog.Logger) *Server {
	if cfg.App == "" {
		cfg.App = "live"
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, m: m, out: out, rooms: rooms, acc: acc, log: log.With("component", "rtmp"),
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
}

// Start listens on Config.Addr and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("rtmp: listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	s.log.Info("RTMP listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the listening address (after Start).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// Close stops listening, closes every connection (publishers end their
// streams, rooms are marked ended) and waits for all goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in RTMP connection", "remote", c.RemoteAddr().String(), "panic", r)
		}
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	remote := c.RemoteAddr().String()
	if err := s.serve(c, remote); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("connection ended", "remote", remote, "err", err)
	}
}

func (s *Server) serve(c net.Conn, remote string) error {
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sess := newSession(c)
	if err := sess.handshake(); err != nil {
		return err
	}
	_ = c.SetDeadline(time.Time{})
	if sess.app != s.cfg.App {
		code := "NetStream.Play.StreamNotFound"
		if sess.publish {
			code = "NetStream.Publish.BadName"
		}
		_ = sess.refuse(code, fmt.Sprintf("unknown application %q (use %q)", sess.app, s.cfg.App))
		return fmt.Errorf("unknown app %q", sess.app)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	if sess.publish {
		pub, ev, err := s.authorizePublish(ctx, sess, remote)
		cancel()
		if err != nil {
			return err
		}
		return s.runPublish(sess, pub, ev)
	}
	rd, st, err := s.authorizePlay(ctx, sess, remote)
	cancel()
	if err != nil {
		return err
	}
	defer rd.Close()
	if err := sess.acceptPlay(); err != nil {
		return fmt.Errorf("play start: %w", err)
	}
	s.log.Debug("player joined", "room", sess.name, "remote", remote)
	return s.servePlay(s.ctx, sess, rd, st)
}

func (s *Server) authorizePublish(ctx context.Context, sess *session, remote string) (*hub.Publisher, access.Event, error) {
	met := s.m.Metrics()
	key := sess.name
	room, err := s.rooms.ByStreamKey(ctx, key)
	if err != nil || room == "" {
		met.Refused.WithLabelValues("publish", "bad_key").Inc()
		_ = sess.refuse("NetStream.Publish.Unauthorized", "invalid stream key")
		return nil, access.Event{}, fmt.Errorf("publish refused: bad stream key: %w", err)
	}
	ev := access.Event{Room: room, Stream: s.cfg.App + "/" + room, Key: key, Protocol: "rtmp", RemoteAddr: remote, Query: sess.query}
	if err := s.acc.OnPublish(ctx, ev); err != nil {
		met.Refused.WithLabelValues("publish", "hook").Inc()
		_ = sess.refuse("NetStream.Publish.Unauthorized", "refused by on_publish hook")
		return nil, ev, fmt.Errorf("publish refused: %w", err)
	}
	pub, err := s.m.Publish(s.ctx, room, remote)
	if err != nil {
		_ = sess.refuse("NetStream.Publish.BadName", "room "+room+": "+err.Error())
		return nil, ev, fmt.Errorf("publish refused: %w", err)
	}
	if err := sess.acceptPublish(); err != nil {
		pub.Close()
		return nil, ev, fmt.Errorf("publish start: %w", err)
	}
	return pub, ev, nil
}

func (s *Server) runPublish(sess *session, pub *hub.Publisher, ev access.Event) error {
	defer s.acc.OnUnpublish(ev)
	defer pub.Close()
	// Kicked, taken over or shut down: closing the socket ends the read loop.
	stop := context.AfterFunc(pub.Context(), func() { _ = sess.conn.Close() })
	defer stop()

	in := &ingest{pub: pub}
	next := func() (message.Message, error) {
		_ = sess.conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
		return sess.mrw.Read()
	}
	pending, err := in.probe(next)
	if err != nil {
		return fmt.Errorf("publish %s: %w", ev.Room, err)
	}
	if err := pub.Start(in.tracks()); err != nil {
		return fmt.Errorf("publish %s: %w", ev.Room, err)
	}
	if in.audioIgnore {
		s.log.Warn("publisher audio is not AAC; audio dropped", "room", ev.Room)
	}
	for _, msg := range pending {
		if err := in.handle(msg); err != nil {
			return fmt.Errorf("publish %s: %w", ev.Room, err)
		}
	}
	for {
		msg, err := next()
		if err != nil {
			return fmt.Errorf("publish %s: %w", ev.Room, err)
		}
		if cmd, ok := msg.(*message.CommandAMF0); ok {
			switch cmd.Name {
			case "deleteStream", "FCUnpublish", "closeStream":
				return nil
			}
			continue
		}
		if err := in.handle(msg); err != nil {
			return fmt.Errorf("publish %s: %w", ev.Room, err)
		}
	}
}

func (s *Server) authorizePlay(ctx context.Context, sess *session, remote string) (*hub.Reader, hub.Start, error) {
	met := s.m.Metrics()
	room := sess.name
	q, _ := url.ParseQuery(sess.query)
	if err := s.acc.CheckSignature(room, q); err != nil {
		met.Refused.WithLabelValues("play", "signature").Inc()
		_ = sess.refuse("NetStream.Play.Forbidden", err.Error())
		return nil, hub.Start{}, err
	}
	ev := access.Event{Room: room, Stream: s.cfg.App + "/" + room, Protocol: hub.ProtoRTMP, RemoteAddr: remote, Query: sess.query}
	if err := s.acc.OnPlay(ctx, ev); err != nil {
		met.Refused.WithLabelValues("play", "hook").Inc()
		_ = sess.refuse("NetStream.Play.Forbidden", "refused by on_play hook")
		return nil, hub.Start{}, err
	}
	rd, st, err := s.m.Play(ctx, room, hub.ProtoRTMP, remote)
	if err != nil {
		met.Refused.WithLabelValues("play", "not_live").Inc()
		_ = sess.refuse("NetStream.Play.StreamNotFound", "room "+room+": "+err.Error())
		return nil, hub.Start{}, fmt.Errorf("play %s: %w", room, err)
	}
	return rd, st, nil
}
