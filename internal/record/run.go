package record

import (
	"context"
	"errors"
	"os"
	"time"

	"roomcast/internal/media/access"
	"roomcast/internal/media/hub"
)

// publish is one publish of a session, recorded by one run goroutine.
type publish struct {
	l       *live
	st      *hub.Stream
	k       int           // the session's k-th publish
	offset  time.Duration // session clock at the publish's DTS 0
	clockMS int64         // wall Unix ms at which the session clock read 0
	fresh   bool          // a new session (else continued)
	prev    chan struct{} // the previous publish's goroutine, finished first
	done    chan struct{}
	// The reader, attached in StreamStarted before the first frame, so the
	// recording starts at the session's first frame whatever the SQL
	// bookkeeping before it costs.
	rd        *hub.Reader
	start     hub.Start
	attachErr error
}

// sqlTimeout bounds the recorder's bookkeeping writes.
const sqlTimeout = 3 * time.Second

// run records one publish until the stream ends, then ends the session
// (which completes after the gap unless the publisher returns).
func (r *Recorder) run(p publish) {
	defer r.wg.Done()
	defer close(p.done)
	if p.prev != nil {
		select {
		case <-p.prev:
		case <-r.ctx.Done():
			if p.rd != nil {
				p.rd.Close()
			}
			return
		}
	}
	l, room := p.l, p.st.Room()
	ctx, cancel := context.WithTimeout(r.ctx, sqlTimeout)
	var err error
	if p.fresh {
		// A session another node (or a crash) left open is over.
		_, _ = r.st.Exec(ctx, `UPDATE sessions SET ended_at = started_at + duration_ms + 1 WHERE room = ? AND ended_at = 0`, room)
		err = r.db.insert(ctx, &Session{ID: l.id, Room: room, StartedAt: time.UnixMilli(p.clockMS), dir: l.dir, clockMS: p.clockMS})
	} else {
		err = r.db.resume(ctx, l.id, p.clockMS)
	}
	cancel()
	if err != nil {
		r.log.Error("session not stored", "room", room, "session", l.id, "err", err)
	}
	r.mu.Lock()
	seg := l.nextSeg
	r.mu.Unlock()
	rec := &recording{r: r, p: p, next: seg, disc: !p.fresh}
	rec.loop()
	r.mu.Lock()
	l.nextSeg = rec.next
	l.recorded = l.recorded || rec.wrote
	r.mu.Unlock()
	r.ended(p, rec)
}

// recording is the state of one publish's writer loop (owned by run).
type recording struct {
	r       *Recorder
	p       publish
	w       *segWriter // nil while not recording
	next    int        // next segment number
	disc    bool       // the next segment follows a gap
	wrote   bool
	end     time.Duration // end of the last written segment (session clock)
	checked time.Time     // last look at the room's recording switch
	on      bool
	params  []*hub.Frame
}

func (rc *recording) loop() {
	st := rc.p.st
	rd, start, err := rc.p.rd, rc.p.start, rc.p.attachErr
	for err == nil {
		rc.params = start.Config
		err = rc.read(rd)
		rd.Close()
		if !errors.Is(err, hub.ErrSlow) {
			break
		}
		// Fell behind too often (a slow disk): start again at the latest
		// key frame, after a discontinuity.
		rc.r.log.Warn("recorder fell behind; resuming at the next key frame", "room", st.Room())
		rc.stop()
		rd, start, err = st.Attach(hub.ProtoInternal, "record")
	}
	rc.stop()
}

func (rc *recording) read(rd *hub.Reader) error {
	batch := make([]*hub.Frame, 0, 256)
	for {
		var err error
		batch, err = rd.Next(rc.r.ctx, batch)
		for _, f := range batch {
			rc.frame(f)
		}
		clear(batch)
		batch = batch[:0]
		if err != nil {
			return err
		}
	}
}

// frame handles one frame: the recording switch is looked at on key
// frames (at most once per segment length), the writer opened at a key
// frame when recording is on and closed when it is turned off.
func (rc *recording) frame(f *hub.Frame) {
	if f.Config {
		kept := rc.params[:0:0] // one per kind: the newest
		for _, c := range rc.params {
			if c.Kind != f.Kind {
				kept = append(kept, c)
			}
		}
		rc.params = append(kept, f)
	}
	if f.Key && time.Since(rc.checked) >= rc.r.cfg.Segment/2 {
		rc.checked = time.Now()
		ctx, cancel := context.WithTimeout(rc.r.ctx, time.Second)
		if on, err := rc.r.loadSetting(ctx, rc.p.st.Room()); err == nil {
			rc.on = on
		}
		cancel()
		if !rc.on {
			rc.stop()
		}
	}
	if !rc.on {
		return
	}
	if rc.w == nil {
		if !f.Key || f.Config {
			return
		}
		if err := os.MkdirAll(rc.p.l.dir, 0o755); err != nil {
			rc.r.log.Error("recording directory", "dir", rc.p.l.dir, "err", err)
			rc.on = false
			return
		}
		var err error
		rc.w, err = newSegWriter(rc.p.l.dir, rc.p.k, rc.p.st.Tracks(), hub.Start{Config: rc.params}, rc.r.cfg.Segment,
			rc.p.offset, rc.p.clockMS, &rc.next, rc.disc)
		if err != nil {
			rc.r.log.Error("recording not started", "room", rc.p.st.Room(), "err", err)
			rc.on = false
			return
		}
		rc.disc = false
	}
	seg := rc.next
	if err := rc.w.write(f); err != nil {
		rc.r.log.Error("recording write failed; recording stops for this publish", "room", rc.p.st.Room(), "err", err)
		rc.w, rc.on = nil, false
		return
	}
	if rc.next != seg { // a segment was written
		rc.progress()
	}
}

// stop flushes and closes the writer (the next one starts after a
// discontinuity).
func (rc *recording) stop() {
	if rc.w == nil {
		return
	}
	seg := rc.next
	if err := rc.w.flush(0); err != nil {
		rc.r.log.Error("recording: last segment lost", "room", rc.p.st.Room(), "err", err)
	}
	if rc.next != seg {
		rc.progress()
	}
	rc.w, rc.disc = nil, true
}

func (rc *recording) progress() {
	rc.wrote, rc.end = true, rc.w.written
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	if err := rc.r.db.progress(ctx, rc.p.l.id, rc.w.written.Milliseconds(), true); err != nil {
		rc.r.log.Warn("session progress not stored", "session", rc.p.l.id, "err", err)
	}
}

// ended records the end of a publish and starts the gap.
func (r *Recorder) ended(p publish, rec *recording) {
	l := p.l
	now := time.Now()
	d := max(p.offset+p.st.LastDTS(), rec.end) // the recording's end includes its last frame's duration
	r.mu.Lock()
	current := l.stream == p.st
	if current {
		l.stream, l.endedAt, l.duration = nil, now, d
		if !r.closed {
			l.gap = time.AfterFunc(r.cfg.SessionGap, func() { r.complete(l) })
		}
	}
	r.mu.Unlock()
	if !current {
		return // taken over: the session goes on
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	if err := r.db.end(ctx, l.id, now, d.Milliseconds()); err != nil {
		r.log.Error("session end not stored", "session", l.id, "err", err)
	}
}

// complete runs when the gap has passed without the publisher: the
// session is over for good and its recording complete (on_record_done).
func (r *Recorder) complete(l *live) {
	r.mu.Lock()
	if r.rooms[l.room] == l && l.stream == nil {
		delete(r.rooms, l.room)
	}
	recorded, d := l.recorded, l.duration
	r.mu.Unlock()
	if recorded {
		r.acc.OnRecordDone(access.RecordDone{Room: l.room, Session: l.id, Path: l.dir, DurationMS: d.Milliseconds()})
	}
}

// sweep deletes recordings older than the retention, until Close.
func (r *Recorder) sweep() {
	defer r.wg.Done()
	every := min(max(r.cfg.Retention/4, time.Second), 10*time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r.sweepOnce()
		select {
		case <-t.C:
		case <-r.ctx.Done():
			return
		}
	}
}

func (r *Recorder) sweepOnce() {
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	old, err := r.db.expired(ctx, time.Now().Add(-r.cfg.Retention))
	if err != nil {
		r.log.Warn("retention sweep", "err", err)
		return
	}
	for _, s := range old {
		if s.dir != "" {
			if err := os.RemoveAll(s.dir); err != nil {
				r.log.Warn("retention: recording not deleted", "session", s.ID, "err", err)
				continue
			}
		}
		if err := r.db.unrecord(ctx, s.ID); err != nil {
			r.log.Warn("retention", "session", s.ID, "err", err)
			continue
		}
		r.log.Info("recording deleted (retention)", "session", s.ID, "room", s.Room)
	}
}
