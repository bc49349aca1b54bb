// Package store keeps roomcast's durable records in SQL: rooms with their
// stream keys and lifecycle times, and key/value settings (generated secrets,
// run-time settings). SQLite (pure Go, in the data dir) is the default.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // SQLite driver
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique key is taken.
var ErrConflict = errors.New("conflict")

// Room is a room's durable record.
type Room struct {
	ID            string
	Title         string
	AnchorID      string
	StreamKey     string
	CreatedAt     time.Time
	Status        string // idle, live, ended
	LiveStartedAt time.Time
	LiveEndedAt   time.Time
}

// Store is the durable record store.
type Store struct {
	db      *sql.DB
	dialect dialect
	// dupAnchor, set by migrate, is an anchor that already had two rooms
	// when the unique index was to be made ("" when the index exists).
	dupAnchor string
	dsn       string // SQLite: how to open another connection (Side)
}

type dialect int

const (
	sqlite dialect = iota
	postgres
	mysql
)

// OpenSQLite opens (creating if needed) roomcast.db in dir.
func OpenSQLite(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: data dir: %w", err)
	}
	path := filepath.Join(dir, "roomcast.db")
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // SQLite has one writer; one connection avoids SQLITE_BUSY
	s := &Store{db: db, dialect: sqlite, dsn: dsn}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB returns the underlying database (for archive tables added later).
func (s *Store) DB() *sql.DB { return s.db }

func (s *Store) migrate(ctx context.Context) error {
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS settings (k VARCHAR(191) PRIMARY KEY, v TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS rooms (
			id VARCHAR(64) PRIMARY KEY,
			title VARCHAR(255) NOT NULL,
			anchor_id VARCHAR(128) NOT NULL,
			stream_key VARCHAR(128) NOT NULL UNIQUE,
			created_at BIGINT NOT NULL,
			status VARCHAR(16) NOT NULL DEFAULT 'idle',
			live_started_at BIGINT NOT NULL DEFAULT 0,
			live_ended_at BIGINT NOT NULL DEFAULT 0
		)`,
		`CREATE INDEX IF NOT EXISTS rooms_anchor ON rooms (anchor_id)`,
	}
	stmts = append(stmts, s.activitySchema()...)            // activities.go
	stmts = append(stmts, invitationSchema...)              // invitations.go
	return s.withSchemaLock(ctx, func(exec ddlExec) error { // sqldb.go: shared databases
		for _, q := range stmts {
			if err := exec(ctx, q); err != nil {
				return fmt.Errorf("store: migrate: %w", err)
			}
		}
		return s.uniqueAnchors(ctx, exec)
	})
}

// uniqueAnchors makes the database enforce one room per anchor (R1) with a
// unique index, so two nodes creating an anchor's room at the same moment
// get one room: the second insert conflicts and Create returns the first.
// A database written before the index existed may already hold an anchor
// with two rooms; then the index is not created (the node still serializes
// its own creates) and AnchorsUnique reports false so the operator is told.
func (s *Store) uniqueAnchors(ctx context.Context, exec ddlExec) error {
	var dup string
	err := s.db.QueryRowContext(ctx, `SELECT anchor_id FROM rooms GROUP BY anchor_id HAVING COUNT(*) > 1 LIMIT 1`).Scan(&dup)
	switch {
	case err == nil:
		s.dupAnchor = dup
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("store: migrate: look for anchors with two rooms: %w", err)
	}
	if err := exec(ctx, `CREATE UNIQUE INDEX IF NOT EXISTS rooms_anchor_one ON rooms (anchor_id)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// AnchorsUnique reports whether the database enforces one room per anchor;
// when it does not, it names an anchor that already has two rooms.
func (s *Store) AnchorsUnique() (ok bool, anchor string) { return s.dupAnchor == "", s.dupAnchor }

// q rewrites ? placeholders for the dialect.
func (s *Store) q(query string) string {
	if s.dialect != postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Setting returns the value of key.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT v FROM settings WHERE k = ?`), key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: setting %s: %w", key, err)
	}
	return v, nil
}

// SetSetting stores key = value.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	var q string
	switch s.dialect {
	case mysql:
		q = `INSERT INTO settings (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)`
	default:
		q = `INSERT INTO settings (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v`
	}
	if _, err := s.db.ExecContext(ctx, s.q(q), key, value); err != nil {
		return fmt.Errorf("store: set %s: %w", key, err)
	}
	return nil
}

// SettingOrCreate returns key's value, storing gen() first if it has none.
// Concurrent callers (several nodes) all end up with the first stored value.
func (s *Store) SettingOrCreate(ctx context.Context, key string, gen func() string) (string, error) {
	v, err := s.Setting(ctx, key)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	var q string
	switch s.dialect {
	case mysql:
		q = `INSERT IGNORE INTO settings (k, v) VALUES (?, ?)`
	default:
		q = `INSERT INTO settings (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING`
	}
	if _, err := s.db.ExecContext(ctx, s.q(q), key, gen()); err != nil {
		return "", fmt.Errorf("store: create %s: %w", key, err)
	}
	return s.Setting(ctx, key)
}

const roomCols = `id, title, anchor_id, stream_key, created_at, status, live_started_at, live_ended_at`

func scanRoom(row interface{ Scan(...any) error }) (Room, error) {
	var r Room
	var created, started, ended int64
	if err := row.Scan(&r.ID, &r.Title, &r.AnchorID, &r.StreamKey, &created, &r.Status, &started, &ended); err != nil {
		return Room{}, err
	}
	r.CreatedAt = time.UnixMilli(created)
	if started > 0 {
		r.LiveStartedAt = time.UnixMilli(started)
	}
	if ended > 0 {
		r.LiveEndedAt = time.UnixMilli(ended)
	}
	return r, nil
}

func (s *Store) roomWhere(ctx context.Context, where string, arg any) (Room, error) {
	r, err := scanRoom(s.db.QueryRowContext(ctx, s.q(`SELECT `+roomCols+` FROM rooms WHERE `+where), arg))
	if errors.Is(err, sql.ErrNoRows) {
		return Room{}, ErrNotFound
	}
	if err != nil {
		return Room{}, fmt.Errorf("store: room: %w", err)
	}
	return r, nil
}

// Room returns the room with id.
func (s *Store) Room(ctx context.Context, id string) (Room, error) {
	return s.roomWhere(ctx, `id = ?`, id)
}

// RoomByAnchor returns the room of anchor.
func (s *Store) RoomByAnchor(ctx context.Context, anchor string) (Room, error) {
	return s.roomWhere(ctx, `anchor_id = ?`, anchor)
}

// RoomByKey returns the room whose stream key is key.
func (s *Store) RoomByKey(ctx context.Context, key string) (Room, error) {
	return s.roomWhere(ctx, `stream_key = ?`, key)
}

// Rooms lists every room, newest first.
func (s *Store) Rooms(ctx context.Context) ([]Room, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+roomCols+` FROM rooms ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("store: rooms: %w", err)
	}
	defer rows.Close()
	var out []Room
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, fmt.Errorf("store: rooms: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// CreateRoom inserts r; ErrConflict if its id or key is taken.
func (s *Store) CreateRoom(ctx context.Context, r Room) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO rooms (`+roomCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		r.ID, r.Title, r.AnchorID, r.StreamKey, r.CreatedAt.UnixMilli(), orIdle(r.Status), ms(r.LiveStartedAt), ms(r.LiveEndedAt))
	if err != nil {
		if isUnique(err) {
			return ErrConflict
		}
		return fmt.Errorf("store: create room: %w", err)
	}
	return nil
}

// SetStreamKey replaces a room's stream key.
func (s *Store) SetStreamKey(ctx context.Context, id, key string) error {
	return s.exec1(ctx, `UPDATE rooms SET stream_key = ? WHERE id = ?`, key, id)
}

// SetLive records a room going live (live=true) or ending at t.
func (s *Store) SetLive(ctx context.Context, id string, live bool, t time.Time) error {
	if live {
		return s.exec1(ctx, `UPDATE rooms SET status = 'live', live_started_at = ?, live_ended_at = 0 WHERE id = ?`, t.UnixMilli(), id)
	}
	return s.exec1(ctx, `UPDATE rooms SET status = 'ended', live_ended_at = ? WHERE id = ?`, t.UnixMilli(), id)
}

// DeleteRoom removes a room.
func (s *Store) DeleteRoom(ctx context.Context, id string) error {
	return s.exec1(ctx, `DELETE FROM rooms WHERE id = ?`, id)
}

func (s *Store) exec1(ctx context.Context, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, s.q(q), args...)
	if err != nil {
		if isUnique(err) {
			return ErrConflict
		}
		return fmt.Errorf("store: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func orIdle(s string) string {
	if s == "" {
		return "idle"
	}
	return s
}

func isUnique(err error) bool {
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "unique") || strings.Contains(m, "duplicate")
}
