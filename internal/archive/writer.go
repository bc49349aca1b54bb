// Package archive keeps the danmaku of live sessions in SQL (issue 10, R9,
// R15) and answers replay queries from there — never from the live
// timeline store.
//
// Writer: the message service hands it each room message of a live session
// right after the message was sequenced (Add never blocks: the send's ack
// does not wait for SQL, and costs one slice append under a mutex — the
// writer is woken once per batch, not per message, see queue.go). One
// goroutine writes batches, yielding the CPU to the live path between
// statements; while SQL is slow or
// down it retries and the queue grows up to Config.Buffer messages, so an
// outage delays the archive without losing it. What does not fit is counted
// in roomcast_archive_dropped_total and logged — never silently dropped.
//
// Exactly once: a message is archived by the node that sequenced it (the
// only node that ever holds it before fan-out), and a batch is stored as
// blocks keyed by a hash of their message ids (blocks.go) with
// insert-or-ignore, so a retried batch is harmless.
// Message ids are unique across nodes and timeline epochs.
package archive

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomcast/internal/auth"
	"roomcast/internal/message"
	"roomcast/internal/store"
)

var schema = []string{
	`CREATE TABLE IF NOT EXISTS archive (
		session_id VARCHAR(40) NOT NULL,
		msg_id VARCHAR(128) NOT NULL,
		room VARCHAR(64) NOT NULL,
		seq BIGINT NOT NULL,
		video_ms BIGINT NOT NULL,
		ts BIGINT NOT NULL,
		kind VARCHAR(16) NOT NULL,
		body TEXT NOT NULL,
		PRIMARY KEY (session_id, msg_id)
	)`,
	`CREATE INDEX IF NOT EXISTS archive_time ON archive (session_id, video_ms, seq)`,
}

// Config tunes the writer. Zero values mean the defaults.
type Config struct {
	// Buffer bounds the queue of messages waiting for SQL; default 100,000.
	Buffer int
	// Batch is the most messages per transaction; default 1,000 (a few
	// block rows). Fewer, larger transactions cost less per message.
	Batch int
	// Linger is how long the writer waits to fill a batch; default 100 ms.
	Linger time.Duration
	// LikeEvery is how often a session's likes become one "like" summary
	// in the archive; default 5 s.
	LikeEvery time.Duration
}

// Metrics are the archive's collectors.
type Metrics struct {
	Written prometheus.Counter
	Dropped prometheus.Counter
	Retries prometheus.Counter
	Queue   prometheus.GaugeFunc
}

type entry struct {
	session string
	m       *message.Message
}

// Archive is the writer and the reader of the danmaku archive.
type Archive struct {
	// Static after construction.
	cfg  Config
	st   *store.Store
	side *store.Store // the writer's (store.Side): its transactions never hold st's connection
	log  *slog.Logger
	met  Metrics
	q    *queue
	stop chan struct{}
	done chan struct{}

	closeOnce sync.Once
	logMu     sync.Mutex
	lastLog   time.Time // last overflow log line; guarded by logMu

	likeMu  sync.Mutex
	likes   map[string]*likeSum // session → likes since the last summary; guarded by likeMu
	likeIDs atomic.Uint64
	node    string // prefix of like summary ids, unique per process

	blk blockWriter // owned by the writer goroutine (run)
}

// likeSum is the likes of one session since its last summary.
type likeSum struct {
	room   string
	count  int64
	lastMS int64 // video_ms of the newest like
	total  int64 // the room's like total after it
}

// New creates the archive table and starts the writer. reg may be nil.
func New(ctx context.Context, cfg Config, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*Archive, error) {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 100000
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 100 * time.Millisecond
	}
	if cfg.LikeEvery <= 0 {
		cfg.LikeEvery = 5 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	if err := st.Migrate(ctx, append(schema, blockSchema...)...); err != nil {
		return nil, err
	}
	a := &Archive{cfg: cfg, st: st, log: log.With("component", "archive"), q: newQueue(cfg.Buffer, cfg.Batch),
		stop: make(chan struct{}), done: make(chan struct{}), likes: map[string]*likeSum{}, node: auth.RandomHex(4)}
	a.met = Metrics{
		Written: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_archive_written_total", Help: "Messages written to the danmaku archive."}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_archive_dropped_total",
			Help: "Messages not archived because the archive queue was full (SQL too slow or down for too long)."}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_archive_retries_total", Help: "Archive batches retried after a SQL error."}),
		Queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_archive_queue_messages", Help: "Messages waiting to be archived."},
			func() float64 { return float64(a.q.len()) }),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{a.met.Written, a.met.Dropped, a.met.Retries, a.met.Queue} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("archive: metrics: %w", err)
			}
		}
	}
	side, err := st.Side()
	if err != nil {
		return nil, err
	}
	a.side = side
	go a.run()
	return a, nil
}

// Add queues m (already sequenced, sealed, stamped with video_ms) for the
// archive of session. It never blocks; a full queue drops and counts.
func (a *Archive) Add(session string, m *message.Message) {
	if !a.q.push(entry{session, m}) {
		a.met.Dropped.Inc()
		a.logMu.Lock()
		if time.Since(a.lastLog) > 10*time.Second {
			a.lastLog = time.Now()
			a.log.Error("archive queue full: messages are not being archived", "buffer", a.cfg.Buffer, "session", session)
		}
		a.logMu.Unlock()
	}
}

// Like counts one like in session at video position ms; total is the
// room's like total after it. Every Config.LikeEvery the likes of each
// session become one archived message of kind "like" at the newest like's
// video_ms, with data {"count": likes since the last summary, "total": T}.
// It never blocks on SQL.
func (a *Archive) Like(session, room string, ms, total int64) {
	a.likeMu.Lock()
	defer a.likeMu.Unlock()
	l := a.likes[session]
	if l == nil {
		if len(a.likes) >= 10000 { // bounded: a summary is due within LikeEvery anyway
			a.met.Dropped.Inc()
			return
		}
		l = &likeSum{room: room}
		a.likes[session] = l
	}
	l.count++
	l.lastMS = max(l.lastMS, ms)
	l.total = max(l.total, total)
}

// flushLikes queues the pending like summaries as messages.
func (a *Archive) flushLikes() {
	a.likeMu.Lock()
	pending := a.likes
	a.likes = map[string]*likeSum{}
	a.likeMu.Unlock()
	now := time.Now().UnixMilli()
	for session, l := range pending {
		v := l.lastMS
		m := &message.Message{ID: "likes-" + a.node + "-" + strconv.FormatUint(a.likeIDs.Add(1), 36), Room: l.room,
			Kind: message.KindLike, Scope: message.ScopeRoom, TS: now, VideoMS: &v,
			Data: []byte(`{"count":` + strconv.FormatInt(l.count, 10) + `,"total":` + strconv.FormatInt(l.total, 10) + `}`)}
		m.Seal()
		a.Add(session, m)
	}
}

// Close writes what is queued (bounded by ctx) and stops the writer.
func (a *Archive) Close(ctx context.Context) error {
	a.closeOnce.Do(func() { close(a.stop) })
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("archive: %d messages not written at shutdown: %w", a.q.len(), ctx.Err())
	}
}

// run owns the batch: once a message is queued it waits at most Linger for
// a full batch (Batch messages), takes it, writes it, and retries a failed
// write with backoff until it succeeds or Close gives up.
func (a *Archive) run() {
	defer close(a.done)
	defer func() {
		a.closeStmts()
		if a.side != a.st {
			a.side.Close()
		}
	}()
	batch := make([]entry, 0, a.cfg.Batch)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	likes := time.NewTicker(a.cfg.LikeEvery)
	defer likes.Stop()
	for {
		select { // due even while the queue never empties
		case <-likes.C:
			a.flushLikes()
		default:
		}
		a.q.drainWake() // the queue is looked at below: a pending wake-up is stale
		if a.q.len() == 0 {
			select {
			case <-a.q.wake:
			case <-likes.C:
				a.flushLikes()
			case <-a.stop:
				a.flushLikes()
				a.drain(batch)
				return
			}
			continue
		}
		if a.q.len() < a.cfg.Batch {
			t.Reset(a.cfg.Linger)
			select {
			case <-t.C:
			case <-a.q.wake: // full (or a stale wake-up: the batch is written early)
				t.Stop()
			case <-a.stop:
			}
		}
		batch = a.q.take(batch[:0], a.cfg.Batch)
		if !a.writeRetrying(batch) {
			return // stopped while SQL is down
		}
		clear(batch)
	}
}

// drain writes everything queued at Close.
func (a *Archive) drain(batch []entry) {
	for {
		batch = a.q.take(batch[:0], a.cfg.Batch)
		if len(batch) == 0 || !a.writeRetrying(batch) {
			return
		}
		clear(batch)
	}
}

func (a *Archive) writeRetrying(batch []entry) bool {
	backoff := 100 * time.Millisecond
	for {
		err := a.write(batch)
		if err == nil {
			a.met.Written.Add(float64(len(batch)))
			return true
		}
		a.met.Retries.Inc()
		a.log.Warn("archive write failed; retrying", "rows", len(batch), "queued", a.q.len(), "err", err)
		select {
		case <-time.After(backoff):
		case <-a.stop:
			// Shutting down: one last try, then give up (counted).
			if a.write(batch) == nil {
				a.met.Written.Add(float64(len(batch)))
				return true
			}
			a.met.Dropped.Add(float64(len(batch) + a.q.len()))
			a.log.Error("archive: SQL unreachable at shutdown; messages not archived", "count", len(batch)+a.q.len())
			return false
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// closeStmts releases the prepared statement (the writer has stopped).
func (a *Archive) closeStmts() {
	if a.blk.ins != nil {
		a.blk.ins.Close()
		a.blk.ins = nil
	}
}

// write stores batch in one transaction: one row per block (see blocks.go)
// with a cached prepared statement, then the retractions.
func (a *Archive) write(batch []entry) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Prepare first: on SQLite the transaction holds the only connection.
	s, err := a.blockStmt(ctx)
	if err != nil {
		return err
	}
	blocks := a.buildBlocks(batch)
	tx, err := a.side.DB().BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("archive: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	ins := tx.StmtContext(ctx, s)
	for i, b := range blocks {
		if i > 0 {
			// Yield to the live path between rows: on the default
			// GOMAXPROCS of a small machine the writer otherwise holds a
			// P for a whole transaction while sends wait for one.
			runtime.Gosched()
		}
		if _, err := ins.ExecContext(ctx, b.session, b.key, b.room, b.min, b.max, b.n, bodyString(b.body)); err != nil {
			return fmt.Errorf("archive: insert: %w", err)
		}
	}
	// A retracted message leaves the replay too (the retract itself stays,
	// as it does in the live stream). Recording it is idempotent, so a
	// retried batch is harmless.
	for _, e := range batch {
		if e.m.Kind == message.KindRetract && e.m.Ref != "" {
			if err := a.retract(ctx, tx, e.session, e.m.Ref); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("archive: commit: %w", err)
	}
	return nil
}
