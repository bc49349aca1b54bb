package record

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"roomcast/internal/store"
)

// Session is one continuous publish of a room (reconnects within the gap
// included), as the API shows it.
type Session struct {
	ID         string     `json:"id"`
	Room       string     `json:"room"`
	StartedAt  time.Time  `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at"` // null while live
	DurationMS int64      `json:"duration_ms"`
	Live       bool       `json:"live"`
	Recorded   bool       `json:"recorded"`
	// Messages is filled by the caller from the archive.
	Messages int64  `json:"messages"`
	VOD      string `json:"vod,omitempty"` // /vod/{sid}/index.m3u8 when recorded
	MP4      string `json:"mp4,omitempty"` // /vod/{sid}.mp4 when recorded
	// Cover is filled by the caller: the session's last picture (a recent
	// one while live), /live/{room}.jpg?… (issue 15).
	Cover string `json:"cover_url,omitempty"`

	dir     string // recording directory ("" when never recorded)
	clockMS int64  // wall Unix ms at which the session clock read 0 for the current publish
}

// ErrNotFound: no such session.
var ErrNotFound = errors.New("no such session")

// sessionDB keeps sessions in the SQL store (table sessions).
type sessionDB struct{ st *store.Store }

var sessionSchema = []string{
	`CREATE TABLE IF NOT EXISTS sessions (
		id VARCHAR(40) PRIMARY KEY,
		room VARCHAR(64) NOT NULL,
		started_at BIGINT NOT NULL,
		ended_at BIGINT NOT NULL DEFAULT 0,
		duration_ms BIGINT NOT NULL DEFAULT 0,
		recorded INT NOT NULL DEFAULT 0,
		dir VARCHAR(512) NOT NULL DEFAULT '',
		clock_ms BIGINT NOT NULL DEFAULT 0
	)`,
	`CREATE INDEX IF NOT EXISTS sessions_room ON sessions (room, started_at)`,
	`CREATE INDEX IF NOT EXISTS sessions_open ON sessions (ended_at)`,
}

const sessionCols = `id, room, started_at, ended_at, duration_ms, recorded, dir, clock_ms`

func scanSession(row interface{ Scan(...any) error }) (Session, error) {
	var s Session
	var started, ended, rec int64
	if err := row.Scan(&s.ID, &s.Room, &started, &ended, &s.DurationMS, &rec, &s.dir, &s.clockMS); err != nil {
		return Session{}, err
	}
	s.StartedAt = time.UnixMilli(started).UTC()
	if ended > 0 {
		t := time.UnixMilli(ended).UTC()
		s.EndedAt = &t
	}
	s.Live = ended == 0
	s.Recorded = rec != 0
	if s.Recorded {
		s.VOD = "/vod/" + s.ID + "/index.m3u8"
		s.MP4 = "/vod/" + s.ID + ".mp4"
	}
	return s, nil
}

func (d sessionDB) insert(ctx context.Context, s *Session) error {
	_, err := d.st.Exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, 0, 0, 0, ?, ?)`,
		s.ID, s.Room, s.StartedAt.UnixMilli(), s.dir, s.clockMS)
	if err != nil {
		return fmt.Errorf("record: insert session %s: %w", s.ID, err)
	}
	return nil
}

func (d sessionDB) get(ctx context.Context, id string) (Session, error) {
	s, err := scanSession(d.st.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("record: session %s: %w", id, err)
	}
	return s, nil
}

// list returns room's sessions, newest first, at most limit.
func (d sessionDB) list(ctx context.Context, room string, limit int) ([]Session, error) {
	return d.query(ctx, `SELECT `+sessionCols+` FROM sessions WHERE room = ? ORDER BY started_at DESC, id DESC LIMIT ?`, room, limit)
}

func (d sessionDB) query(ctx context.Context, q string, args ...any) ([]Session, error) {
	rows, err := d.st.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("record: sessions: %w", err)
	}
	defer rows.Close()
	out := []Session{}
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("record: sessions: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// resume reopens a session (a reconnect within the gap) with a new clock.
func (d sessionDB) resume(ctx context.Context, id string, clockMS int64) error {
	_, err := d.st.Exec(ctx, `UPDATE sessions SET ended_at = 0, clock_ms = ? WHERE id = ?`, clockMS, id)
	return err
}

// progress records the session's length so far (and that it has video).
func (d sessionDB) progress(ctx context.Context, id string, durationMS int64, recorded bool) error {
	q := `UPDATE sessions SET duration_ms = ? WHERE id = ?`
	if recorded {
		q = `UPDATE sessions SET duration_ms = ?, recorded = 1 WHERE id = ?`
	}
	_, err := d.st.Exec(ctx, q, durationMS, id)
	return err
}

func (d sessionDB) end(ctx context.Context, id string, endedAt time.Time, durationMS int64) error {
	_, err := d.st.Exec(ctx, `UPDATE sessions SET ended_at = ?, duration_ms = ? WHERE id = ?`, endedAt.UnixMilli(), durationMS, id)
	return err
}

// open returns every session without an end, oldest first (so the newest
// of a room wins when they are put in a map).
func (d sessionDB) open(ctx context.Context) ([]Session, error) {
	return d.query(ctx, `SELECT `+sessionCols+` FROM sessions WHERE ended_at = 0 ORDER BY started_at LIMIT 100000`)
}

// closeOrphans ends sessions left open by a crash or restart of this
// (single) node, at their last recorded length.
func (d sessionDB) closeOrphans(ctx context.Context) error {
	_, err := d.st.Exec(ctx, `UPDATE sessions SET ended_at = started_at + duration_ms + 1 WHERE ended_at = 0`)
	return err
}

// expired returns recorded sessions that ended before cutoff.
func (d sessionDB) expired(ctx context.Context, cutoff time.Time) ([]Session, error) {
	return d.query(ctx, `SELECT `+sessionCols+` FROM sessions WHERE recorded = 1 AND ended_at > 0 AND ended_at < ? ORDER BY ended_at LIMIT 100`, cutoff.UnixMilli())
}

func (d sessionDB) unrecord(ctx context.Context, id string) error {
	_, err := d.st.Exec(ctx, `UPDATE sessions SET recorded = 0 WHERE id = ?`, id)
	return err
}
