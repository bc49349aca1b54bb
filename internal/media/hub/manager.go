// Package hub is the media core: one Stream per live room, fed by one
// publisher and read by any number of readers (RTMP and HTTP-FLV viewers,
// the room's HLS muxer).
//
// The publisher's goroutine does each frame's work once — timestamp
// normalisation, key frame detection, FLV muxing — and appends the
// immutable Frame to the stream's bounded ring. Readers share those frames
// and their FLV tag bytes (which are also the RTMP message payloads); each
// reader has its own cursor, read by one goroutine at a time: the protocol
// server's (the HLS muxer; an FLV or RTMP viewer's own while it writes its
// start or a rest its socket did not take) or its stream's shared writer
// (package egress, which reads with Reader.Poll). Appending never waits for
// readers. A reader that falls more than
// Config.MaxLag behind (or whose next frame was evicted) skips to the latest
// key frame, counted in roomcast_media_dropped_frames_total; one that keeps
// doing so is dropped (ErrSlow). Memory per stream is bounded by the ring
// (Config.RingBytes, Config.RingFrames), not by the number of readers.
//
// The ring doubles as the GOP cache (M5): a new reader starts at the latest
// key frame in it, after the metadata and sequence headers.
//
// The Manager maps rooms to streams and drives the room lifecycle through
// the consumer-side Rooms interface: SetLive(true) once the publisher's
// tracks are known, SetLive(false) when it leaves.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Rooms is what the hub needs from the room registry.
type Rooms interface {
	// ByStreamKey returns the room whose stream key is key (publish auth).
	ByStreamKey(ctx context.Context, key string) (roomID string, err error)
	// Exists reports whether room id exists (play).
	Exists(ctx context.Context, id string) (bool, error)
	// SetLive records the start or end of a room's live stream.
	SetLive(ctx context.Context, id string, live bool) error
}

// Observer is told about streams that start (the HLS server makes a
// muxer, the recorder opens a session). StreamStarted runs under the
// manager's lifecycle lock, before the room is marked live (so a session
// exists before the room's live_start message is sequenced): it must be
// quick, do no I/O that can hang, and never call back into the Manager.
type Observer interface {
	StreamStarted(s *Stream)
}

// Config tunes the hub. Zero values mean the documented defaults, except
// GOPCache and PublishTakeover whose zero value (false) means off.
type Config struct {
	// GOPCache starts new readers at the latest cached key frame (M5);
	// false makes them wait for the next key frame.
	GOPCache bool
	// PublishTakeover lets a second publisher replace the first; false
	// refuses it.
	PublishTakeover bool
	// RingFrames bounds the frames kept per stream; 0 means 2048.
	RingFrames int
	// RingBytes bounds the tag bytes kept per stream; 0 means 16 MiB. It
	// must hold a GOP for the GOP cache to work.
	RingBytes int
	// MaxLag is how far (in media time) a reader may fall behind the newest
	// frame before it skips to the latest key frame; 0 means 5 s.
	MaxLag time.Duration
	// MaxSkips is how many skips within SkipWindow a reader survives; 0
	// means 3. SkipWindow 0 means 30 s.
	MaxSkips   int
	SkipWindow time.Duration
	// StartTimeout is how long a player waits for a publisher whose tracks
	// are still being probed; 0 means 5 s.
	StartTimeout time.Duration
	// LifecycleTimeout bounds each Rooms.SetLive call; 0 means 5 s.
	LifecycleTimeout time.Duration
}

func (c *Config) defaults() {
	if c.RingFrames <= 0 {
		c.RingFrames = 2048
	}
	if c.RingBytes <= 0 {
		c.RingBytes = 16 << 20
	}
	if c.MaxLag <= 0 {
		c.MaxLag = 5 * time.Second
	}
	if c.MaxSkips <= 0 {
		c.MaxSkips = 3
	}
	if c.SkipWindow <= 0 {
		c.SkipWindow = 30 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 5 * time.Second
	}
	if c.LifecycleTimeout <= 0 {
		c.LifecycleTimeout = 5 * time.Second
	}
}

// Errors returned by Publish and Play.
var (
	ErrBusy     = errors.New("room is already being published")
	ErrNotLive  = errors.New("room is not live")
	ErrNoRoom   = errors.New("no such room")
	ErrClosed   = errors.New("media server is shutting down")
	ErrReplaced = errors.New("publisher was replaced by a newer one")
)

// Manager owns the streams: room id → current Stream.
type Manager struct {
	cfg   Config
	rooms Rooms
	log   *slog.Logger
	met   *Metrics
	ids   atomic.Uint64

	// lifeMu serialises lifecycle decisions (SetLive calls and the
	// "is this still the room's current stream" checks around them) so a
	// late live=false of a replaced publisher can never land after the
	// live=true of its successor.
	lifeMu sync.Mutex

	live map[string]bool // rooms we reported live to Rooms; guarded by lifeMu

	mu        sync.Mutex
	streams   map[string]*Stream // guarded by mu
	observers []Observer         // guarded by mu
	closed    bool               // guarded by mu
}

// NewManager returns a Manager. met may be nil (unregistered metrics).
func NewManager(cfg Config, rooms Rooms, log *slog.Logger, met *Metrics) *Manager {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	if met == nil {
		met, _ = NewMetrics(nil)
	}
	return &Manager{cfg: cfg, rooms: rooms, log: log, met: met, streams: map[string]*Stream{}, live: map[string]bool{}}
}

// Metrics returns the manager's metrics (shared with protocol servers).
func (m *Manager) Metrics() *Metrics { return m.met }

// Config returns the effective configuration.
func (m *Manager) Config() Config { return m.cfg }

// AddObserver registers o for future stream starts.
func (m *Manager) AddObserver(o Observer) {
	m.mu.Lock()
	m.observers = append(m.observers, o)
	m.mu.Unlock()
}

// Publish claims room for a new publisher from remote. The returned
// Publisher must be Started once its tracks are known and Closed when it
// goes away. Its Context is canceled when it must stop (taken over,
// kicked, shutdown). A second publisher gets ErrBusy unless
// Config.PublishTakeover.
func (m *Manager) Publish(ctx context.Context, room, remote string) (*Publisher, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	old := m.streams[room]
	if old != nil && !m.cfg.PublishTakeover {
		m.met.Refused.WithLabelValues("publish", "busy").Inc()
		return nil, ErrBusy
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Stream{
		room: room, m: m, id: m.ids.Add(1), remote: remote, startedAt: time.Now(),
		ctx: sctx, cancel: cancel, ready: make(chan struct{}),
		ringCap: m.cfg.RingFrames, ringMax: m.cfg.RingBytes,
		ring: make([]*Frame, m.cfg.RingFrames), signal: make(chan struct{}), flush: make(chan struct{}),
		readers: map[*Reader]struct{}{},
	}
	m.streams[room] = s
	if old != nil {
		m.log.Info("publisher taken over", "room", room, "old", old.remote, "new", remote)
		old.cancel()
		old.end() // its readers finish now; its Close will not mark the room ended
	}
	return &Publisher{s: s}, nil
}

// Stream returns room's current stream, or nil.
func (m *Manager) Stream(room string) *Stream {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streams[room]
}

// Streams returns every current stream.
func (m *Manager) Streams() []*Stream {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Stream, 0, len(m.streams))
	for _, s := range m.streams {
		out = append(out, s)
	}
	return out
}

// Kick tells room's publisher to stop; it reports whether there was one.
func (m *Manager) Kick(room string) bool {
	s := m.Stream(room)
	if s == nil {
		return false
	}
	s.cancel()
	return true
}

// Play attaches a reader for proto to room's stream, waiting up to
// Config.StartTimeout for a publisher that is still probing its tracks.
// The caller owns the Reader: it must call Next from one goroutine and
// Close when done.
func (m *Manager) Play(ctx context.Context, room, proto, remote string) (*Reader, Start, error) {
	s := m.Stream(room)
	if s == nil {
		ok, err := m.rooms.Exists(ctx, room)
		if err != nil {
			return nil, Start{}, fmt.Errorf("play %s: %w", room, err)
		}
		if !ok {
			return nil, Start{}, ErrNoRoom
		}
		return nil, Start{}, ErrNotLive
	}
	t := time.NewTimer(m.cfg.StartTimeout)
	defer t.Stop()
	select {
	case <-s.ready:
	case <-t.C:
		return nil, Start{}, ErrNotLive
	case <-ctx.Done():
		return nil, Start{}, ctx.Err()
	}
	return s.Attach(proto, remote)
}

// Attach adds a reader to a started stream, positioned at the latest key
// frame when the GOP cache is on and holds one, else at the head waiting
// for the next key frame. It fails with ErrNotLive once the stream ended.
func (s *Stream) Attach(proto, remote string) (*Reader, Start, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || !s.started {
		return nil, Start{}, ErrNotLive
	}
	r := &Reader{s: s, proto: proto, remote: remote, created: time.Now()}
	if proto != ProtoInternal {
		r.bytesOut = s.m.met.BytesOut.WithLabelValues(proto)
	}
	if s.m.cfg.GOPCache && s.gopOK {
		r.next = s.gop
	} else {
		r.next, r.waitKey = s.head, true
	}
	st := Start{HasVideo: s.tracks.Video != nil, HasAudio: s.tracks.Audio != nil}
	for _, f := range []*Frame{s.meta, s.vcfg, s.acfg} {
		if f != nil {
			st.Config = append(st.Config, f)
		}
	}
	s.readers[r] = struct{}{}
	return r, st, nil
}

// Close ends every stream (readers drain and finish cleanly, rooms are
// marked ended) and refuses new publishers. Publishers see their Context
// canceled; their Close calls afterwards are harmless.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	streams := make([]*Stream, 0, len(m.streams))
	for _, s := range m.streams {
		streams = append(streams, s)
	}
	m.mu.Unlock()
	for _, s := range streams {
		s.finish()
	}
}

func (m *Manager) setLive(s *Stream, live bool) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.LifecycleTimeout)
	defer cancel()
	if err := m.rooms.SetLive(ctx, s.room, live); err != nil {
		m.log.Error("room lifecycle update failed", "room", s.room, "live", live, "err", err)
	}
}
