package transcode

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/media/hub"
)

// Config configures the ladder.
type Config struct {
	// Renditions are the rungs (Parse); empty means no ladder.
	Renditions []Rendition
	// RTMP returns this node's RTMP address ("127.0.0.1:1935"), where the
	// child reads the source and publishes the renditions.
	RTMP func() string
	// PlayQuery returns the query that signs a play URL of room ("" when
	// play URLs are not signed).
	PlayQuery func(room string) string
	// FFmpeg is the binary; "" means "ffmpeg" on PATH.
	FFmpeg string
	// Preset is libx264's preset; "" means "veryfast".
	Preset string
	// MinBackoff and MaxBackoff bound the restart delay; 0 means 1 s and
	// 30 s.
	MinBackoff, MaxBackoff time.Duration
}

// Ladder starts, supervises and stops one ffmpeg per live source room. It
// is a hub.Observer.
type Ladder struct {
	cfg  Config
	log  *slog.Logger
	keys keys

	restarts prometheus.Counter

	mu      sync.Mutex
	running map[string]*child // by source room; guarded by mu
	closed  bool              // guarded by mu
	wg      sync.WaitGroup
	stop    chan struct{}
}

// child is one room's supervised ffmpeg.
type child struct {
	mu      sync.Mutex
	pid     int           // of the current process, 0 between runs; guarded by mu
	cpuDone time.Duration // CPU of the processes that ended; guarded by mu
	starts  int           // guarded by mu
}

// New returns a ladder; Register its metrics with reg (may be nil).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Ladder, error) {
	if cfg.FFmpeg == "" {
		cfg.FFmpeg = "ffmpeg"
	}
	if cfg.Preset == "" {
		cfg.Preset = "veryfast"
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	l := &Ladder{cfg: cfg, log: log.With("component", "transcode"), keys: newKeys(), running: map[string]*child{}, stop: make(chan struct{}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_transcode_restarts_total",
			Help: "Quality-ladder ffmpeg processes restarted after dying while their room was live."})}
	if reg != nil {
		for _, c := range []prometheus.Collector{l.restarts, collector{l}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("transcode: metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Rooms wraps the registry for the media server (see Rooms).
func (l *Ladder) Rooms(inner Registry) Rooms { return Rooms{inner: inner, ladder: l} }

// Names are the renditions' names ("720p", …).
func (l *Ladder) Names() []string { return Names(l.cfg.Renditions) }

// Source splits a rendition room "show_480p" into "show" and "480p".
func (l *Ladder) Source(room string) (src, name string, ok bool) {
	for _, r := range l.cfg.Renditions {
		if s, found := strings.CutSuffix(room, "_"+r.Name); found && s != "" {
			return s, r.Name, true
		}
	}
	return "", "", false
}

// StreamStarted implements hub.Observer: a source room's ladder starts.
func (l *Ladder) StreamStarted(s *hub.Stream) {
	if _, _, ok := l.Source(s.Room()); ok {
		return // a rendition
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	c := &child{}
	l.running[s.Room()] = c
	l.wg.Add(1)
	go l.supervise(s, c)
}

// Close kills every child and waits for the supervisors.
func (l *Ladder) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// supervise runs room's ffmpeg until the stream ends, restarting it with
// backoff when it dies.
func (l *Ladder) supervise(s *hub.Stream, c *child) {
	defer l.wg.Done()
	room := s.Room()
	defer func() {
		l.mu.Lock()
		if l.running[room] == c {
			delete(l.running, room)
		}
		l.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.Done():
		case <-l.stop:
		}
		cancel()
	}()
	backoff := l.cfg.MinBackoff
	for {
		began := time.Now()
		err := l.run(ctx, room, c)
		if ctx.Err() != nil {
			return // the publisher left (or shutdown): the child was killed on purpose
		}
		if time.Since(began) > time.Minute {
			backoff = l.cfg.MinBackoff
		}
		l.log.Warn("quality ladder ffmpeg died; restarting", "room", room, "err", err, "in", backoff)
		l.restarts.Inc()
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, l.cfg.MaxBackoff)
	}
}

// run runs one ffmpeg process for room until it exits or ctx ends.
func (l *Ladder) run(ctx context.Context, room string, c *child) error {
	cmd := exec.CommandContext(ctx, l.cfg.FFmpeg, l.args(room)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Kill) }
	var stderr tail
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	c.mu.Lock()
	c.pid = cmd.Process.Pid
	c.starts++
	c.mu.Unlock()
	err := cmd.Wait()
	c.mu.Lock()
	c.pid = 0
	if ps := cmd.ProcessState; ps != nil {
		c.cpuDone += ps.UserTime() + ps.SystemTime()
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %s", err, stderr.String())
	}
	return nil
}

// args is one ffmpeg reading room and writing every rendition: H.264 at
// the rung's height and bitrate with 2 s GOPs (so HLS segments align), the
// first audio track as 96 kb/s AAC.
func (l *Ladder) args(room string) []string {
	base := "rtmp://" + l.cfg.RTMP() + "/live/"
	in := base + room
	if l.cfg.PlayQuery != nil {
		if q := l.cfg.PlayQuery(room); q != "" {
			in += "?" + q
		}
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "15000000", "-i", in}
	for _, r := range l.cfg.Renditions {
		br := strconv.Itoa(r.Bitrate)
		args = append(args, "-map", "0:v:0", "-map", "0:a:0?",
			"-vf", "scale=-2:"+strconv.Itoa(r.Height), "-c:v", "libx264", "-preset", l.cfg.Preset, "-tune", "zerolatency",
			"-pix_fmt", "yuv420p", "-b:v", br, "-maxrate", br, "-bufsize", strconv.Itoa(2*r.Bitrate),
			"-force_key_frames", "expr:gte(t,n_forced*2)", "-sc_threshold", "0",
			"-c:a", "aac", "-b:a", "96k", "-ar", "44100",
			"-f", "flv", base+l.keys.key(room+"_"+r.Name))
	}
	return args
}

// PIDs lists the running children by source room (for operators' tools
// and tests).
func (l *Ladder) PIDs() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for room, c := range l.running {
		c.mu.Lock()
		if c.pid != 0 {
			out[room] = c.pid
		}
		c.mu.Unlock()
	}
	return out
}

// tail keeps the last 2 KiB written (a dying ffmpeg's last words).
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2048 {
		t.buf = t.buf[len(t.buf)-2048:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
