// Package record owns recorded sessions (issue 10, M6): where a session of
// a room begins and ends, the segment writer that keeps it on disk, the
// session clock every live message is stamped with (video_ms), retention,
// and the VOD playlist and whole-session MP4 served from the segments.
//
// A recorder is a reader of the media hub like any viewer: one internal
// reader per live stream with its own goroutine, bounded by the hub's ring;
// if it falls behind it skips to the latest key frame like any viewer
// (counted by the hub), it never slows the publisher. Segments are fMP4
// (CMAF-style moof+mdat) cut on key frames with the published codecs — no
// transcoding — so the HLS playlist references them directly and the MP4
// of the whole session is the first init segment followed by every
// segment, served with Range support.
//
// The session clock: video_ms is milliseconds since the session's first
// frame, on the timeline of the recording. A publish's frames carry DTS from
// its own first frame; a reconnect within SessionGap continues the session
// with its clock offset by what was published before, so the recording and
// the clock skip the gap together (the playlist marks it with
// EXT-X-DISCONTINUITY).
package record

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/media/access"
	"roomcast/internal/media/hub"
	"roomcast/internal/store"
)

// Config configures recording. Zero values are documented per field.
type Config struct {
	// Enabled records rooms that have no setting of their own
	// (--record, default true). The zero value false records nothing until
	// a room turns recording on.
	Enabled bool
	// Dir holds the recordings (--record-dir); "" means DATA/recordings,
	// which the caller resolves.
	Dir string
	// SessionGap: a publisher back within it continues the session; 0
	// means 30 s.
	SessionGap time.Duration
	// Retention deletes recordings of sessions that ended longer ago; 0
	// keeps them forever. The sessions and their danmaku stay.
	Retention time.Duration
	// Segment is the target segment length (cut at the next key frame):
	// the most video a crash can lose. 0 means 4 s.
	Segment time.Duration
}

// endGrace is how long after a publisher leaves messages are still stamped
// with (and archived into) its session — the room's live_end message is
// sequenced just after the stream ends.
const endGrace = 3 * time.Second

// Recorder tracks sessions, writes recordings and serves them.
type Recorder struct {
	// Static after construction.
	cfg    Config
	st     *store.Store
	db     sessionDB
	acc    *access.Checker
	log    *slog.Logger
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // run and sweep goroutines

	mu      sync.RWMutex           // read-locked on every send (Position)
	rooms   map[string]*live       // room → current or recently ended session; guarded by mu
	remote  map[string]remoteClock // rooms live on other nodes (shared database); guarded by mu
	setting map[string]bool        // per-room recording switch; guarded by mu
	closed  bool                   // guarded by mu
}

// live is a session this node is recording (or whose gap is running).
type live struct {
	// Guarded by Recorder.mu.
	id        string
	room      string
	dir       string
	stream    *hub.Stream   // current publish; nil during the gap
	offset    time.Duration // session clock at the publish's DTS 0
	duration  time.Duration // session length when the last publish ended
	endedAt   time.Time     // zero while a publish is live
	publishes int
	recorded  bool
	nextSeg   int
	gap       *time.Timer
	done      chan struct{} // closed when the current publish's goroutine finished
}

// remoteClock is a session live on another node (shared database).
type remoteClock struct {
	id      string
	clockMS int64
}

// New builds a Recorder, creating its tables. It ends sessions a crash left
// open (single-node store only: on a shared database other nodes may be
// live) and starts the retention sweeper.
func New(ctx context.Context, cfg Config, st *store.Store, acc *access.Checker, log *slog.Logger) (*Recorder, error) {
	if cfg.SessionGap <= 0 {
		cfg.SessionGap = 30 * time.Second
	}
	if cfg.Segment <= 0 {
		cfg.Segment = 4 * time.Second
	}
	if cfg.Dir == "" {
		return nil, errors.New("record: no recording directory")
	}
	if log == nil {
		log = slog.Default()
	}
	if err := st.Migrate(ctx, sessionSchema...); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("record: --record-dir: %w", err)
	}
	db := sessionDB{st}
	if !st.Shared() {
		if err := db.closeOrphans(ctx); err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{cfg: cfg, st: st, db: db, acc: acc, log: log.With("component", "record"), ctx: rctx, cancel: cancel,
		rooms: map[string]*live{}, remote: map[string]remoteClock{}, setting: map[string]bool{}}
	if cfg.Retention > 0 {
		r.wg.Add(1)
		go r.sweep()
	}
	if st.Shared() {
		r.wg.Add(1)
		go r.watchRemote()
	}
	return r, nil
}

// Close stops recording: publishes still running are written out as they
// are (the media server should end them first), pending sessions are
// completed and every goroutine has returned.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	var pending []*live
	for _, l := range r.rooms {
		if l.stream == nil && (l.gap == nil || l.gap.Stop()) {
			pending = append(pending, l)
		}
	}
	r.mu.Unlock()
	for _, l := range pending {
		r.complete(l)
	}
	return nil
}

func newSessionID() string { return "s" + auth.RandomHex(8) }

// StreamStarted implements hub.Observer: it opens a session (or continues
// the room's session when the publisher is back within the gap) and starts
// the goroutine that records the publish. It runs before the room's
// live_start message is sequenced and does no I/O.
func (r *Recorder) StreamStarted(st *hub.Stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	room := st.Room()
	now := time.Now()
	l := r.rooms[room]
	fresh := true
	var prev chan struct{}
	switch {
	case l != nil && l.stream != nil: // takeover: the new publisher continues the session
		fresh, prev = false, l.done
		l.offset += l.stream.LastDTS()
	case l != nil && now.Sub(l.endedAt) <= r.cfg.SessionGap && (l.gap == nil || l.gap.Stop()):
		fresh, prev = false, l.done
		l.offset = l.duration
	}
	if fresh {
		id := newSessionID()
		l = &live{id: id, room: room, dir: filepath.Join(r.cfg.Dir, room, id), nextSeg: 1}
		r.rooms[room] = l
	}
	l.stream, l.endedAt, l.gap = st, time.Time{}, nil
	l.publishes++
	l.done = make(chan struct{})
	pub := publish{l: l, st: st, k: l.publishes, offset: l.offset, clockMS: now.UnixMilli() - (l.offset + st.LastDTS()).Milliseconds(),
		fresh: fresh, prev: prev, done: l.done}
	pub.rd, pub.start, pub.attachErr = st.Attach(hub.ProtoInternal, "record")
	r.wg.Add(1)
	go r.run(pub)
}

// Position implements the session clock the message service stamps with:
// the session live in room now and the position in it, in ms. Rooms
// published on this node are read from the hub; with a shared database,
// rooms published on another node from the session's wall-clock anchor,
// which watchRemote refreshes every second. It never does I/O.
func (r *Recorder) Position(ctx context.Context, room string) (session string, ms int64, ok bool) {
	r.mu.RLock()
	l := r.rooms[room]
	if l != nil {
		defer r.mu.RUnlock()
		if l.stream != nil {
			return l.id, (l.offset + l.stream.LastDTS()).Milliseconds(), true
		}
		if time.Since(l.endedAt) < endGrace {
			return l.id, l.duration.Milliseconds(), true
		}
		return "", 0, false
	}
	rc, ok := r.remote[room]
	r.mu.RUnlock()
	if !ok {
		return "", 0, false
	}
	return rc.id, max(time.Now().UnixMilli()-rc.clockMS, 0), true
}

// watchRemote keeps the open sessions of the shared database in r.remote
// (one query per node per second, whatever the number of rooms), so nodes
// without a room's publisher stamp its messages too — from a second after
// the session starts.
func (r *Recorder) watchRemote() {
	defer r.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
		open, err := r.db.open(ctx)
		cancel()
		if err == nil {
			m := make(map[string]remoteClock, len(open))
			for _, s := range open {
				if s.clockMS > 0 {
					m[s.Room] = remoteClock{id: s.ID, clockMS: s.clockMS}
				}
			}
			r.mu.Lock()
			r.remote = m
			r.mu.Unlock()
		}
		select {
		case <-t.C:
		case <-r.ctx.Done():
			return
		}
	}
}

// Enabled reports whether room records (its own setting, else the default).
func (r *Recorder) Enabled(ctx context.Context, room string) (bool, error) {
	r.mu.Lock()
	v, ok := r.setting[room]
	r.mu.Unlock()
	if ok {
		return v, nil
	}
	return r.loadSetting(ctx, room)
}

func settingKey(room string) string { return "recording:" + room }

func (r *Recorder) loadSetting(ctx context.Context, room string) (bool, error) {
	s, err := r.st.Setting(ctx, settingKey(room))
	v := r.cfg.Enabled
	switch {
	case err == nil:
		v = s == "on"
	case !errors.Is(err, store.ErrNotFound):
		return r.cfg.Enabled, fmt.Errorf("record: setting: %w", err)
	}
	r.mu.Lock()
	if len(r.setting) > 10000 {
		clear(r.setting)
	}
	r.setting[room] = v
	r.mu.Unlock()
	return v, nil
}

// SetEnabled turns recording of room on or off from now on (the current
// session included: it starts or stops at the next segment boundary).
func (r *Recorder) SetEnabled(ctx context.Context, room string, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	if err := r.st.SetSetting(ctx, settingKey(room), v); err != nil {
		return err
	}
	r.mu.Lock()
	r.setting[room] = on
	r.mu.Unlock()
	return nil
}

// Session returns one session.
func (r *Recorder) Session(ctx context.Context, id string) (Session, error) {
	if !ValidSessionID(id) {
		return Session{}, ErrNotFound
	}
	s, err := r.db.get(ctx, id)
	if err != nil {
		return Session{}, err
	}
	r.liveView(&s)
	return s, nil
}

// Sessions lists room's sessions, newest first (at most limit).
func (r *Recorder) Sessions(ctx context.Context, room string, limit int) ([]Session, error) {
	ss, err := r.db.list(ctx, room, limit)
	if err != nil {
		return nil, err
	}
	for i := range ss {
		r.liveView(&ss[i])
	}
	return ss, nil
}

// liveView fills in a live session's current length.
func (r *Recorder) liveView(s *Session) {
	if !s.Live {
		return
	}
	if _, ms, ok := r.Position(context.Background(), s.Room); ok {
		s.DurationMS = max(s.DurationMS, ms)
	}
}

// ValidSessionID reports whether id looks like a session id.
func ValidSessionID(id string) bool {
	if len(id) < 2 || len(id) > 40 || id[0] != 's' {
		return false
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
