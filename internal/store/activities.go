package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// activitySchema holds live activities (issue 12 quizzes; issue 13 rains use
// the same records): each activity's definition as JSON, revival cards,
// prizes paid (one row per activity, user and kind, so a settlement
// retried or run by two nodes at once pays nobody twice), and the memory
// quiz state's snapshots for single-node restarts.
var activitySchemaSQL = []string{
	`CREATE TABLE IF NOT EXISTS activities (
		id VARCHAR(64) PRIMARY KEY,
		room VARCHAR(64) NOT NULL,
		status VARCHAR(16) NOT NULL,
		starts_at BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		definition TEXT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS activities_room ON activities (room, starts_at)`,
	`CREATE TABLE IF NOT EXISTS activity_cards (user_id VARCHAR(128) PRIMARY KEY, granted BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS activity_card_uses (
		activity VARCHAR(64) NOT NULL,
		user_id VARCHAR(128) NOT NULL,
		at BIGINT NOT NULL,
		PRIMARY KEY (activity, user_id)
	)`,
	`CREATE TABLE IF NOT EXISTS prizes (
		activity VARCHAR(64) NOT NULL,
		user_id VARCHAR(128) NOT NULL,
		kind VARCHAR(16) NOT NULL,
		amount_cents BIGINT NOT NULL,
		at BIGINT NOT NULL,
		PRIMARY KEY (activity, user_id, kind)
	)`,
	`CREATE INDEX IF NOT EXISTS prizes_user ON prizes (user_id, at)`,
	`CREATE TABLE IF NOT EXISTS activity_live (activity VARCHAR(64) PRIMARY KEY, snapshot TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS rain_packets (
		activity VARCHAR(64) NOT NULL,
		rain INTEGER NOT NULL,
		packet INTEGER NOT NULL,
		user_id VARCHAR(128) NOT NULL,
		amount_cents BIGINT NOT NULL,
		at BIGINT NOT NULL,
		PRIMARY KEY (activity, rain, packet)
	)`,
	`CREATE INDEX IF NOT EXISTS rain_packets_user ON rain_packets (user_id, at)`,
}

// activitySchema is activitySchemaSQL for the dialect: MySQL's TEXT holds
// only 64 KiB, so definitions and snapshots get MEDIUMTEXT there.
func (s *Store) activitySchema() []string {
	if s.dialect != mysql {
		return activitySchemaSQL
	}
	out := make([]string, len(activitySchemaSQL))
	for i, q := range activitySchemaSQL {
		out[i] = strings.ReplaceAll(q, " TEXT NOT NULL", " MEDIUMTEXT NOT NULL")
	}
	return out
}

// ActivityRecord is an activity's durable record; Definition is the
// activity's JSON as its package writes it.
type ActivityRecord struct {
	ID         string
	Room       string
	Status     string
	StartsAt   time.Time
	CreatedAt  time.Time
	Definition []byte
}

// Prize is one payment of an activity to a user.
type Prize struct {
	Activity    string `json:"activity"`
	User        string `json:"user"`
	AmountCents int64  `json:"amount_cents"`
	Kind        string `json:"kind"` // quiz or rain
	At          int64  `json:"at"`   // epoch ms
	Rain        *int   `json:"rain,omitempty"`
	Packet      *int   `json:"packet,omitempty"`
}

// RainPacket is one red packet paid (issue 13): each packet of a rain is a
// row of its own, keyed by activity, rain and packet, so writing it again
// (a retried or concurrent settlement) pays nobody twice.
type RainPacket struct {
	N           int    `json:"n"`
	User        string `json:"user"`
	AmountCents int64  `json:"amount_cents"`
	At          int64  `json:"at"` // epoch ms
}

// CreateActivity inserts rec; ErrConflict if its id is taken.
func (s *Store) CreateActivity(ctx context.Context, rec ActivityRecord) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO activities (id, room, status, starts_at, created_at, definition) VALUES (?, ?, ?, ?, ?, ?)`),
		rec.ID, rec.Room, rec.Status, rec.StartsAt.UnixMilli(), rec.CreatedAt.UnixMilli(), string(rec.Definition))
	if err != nil {
		if isUnique(err) {
			return ErrConflict
		}
		return fmt.Errorf("store: create activity: %w", err)
	}
	return nil
}

const activityCols = `id, room, status, starts_at, created_at, definition`

func scanActivity(row interface{ Scan(...any) error }) (ActivityRecord, error) {
	var r ActivityRecord
	var starts, created int64
	var def string
	if err := row.Scan(&r.ID, &r.Room, &r.Status, &starts, &created, &def); err != nil {
		return r, err
	}
	r.StartsAt, r.CreatedAt, r.Definition = time.UnixMilli(starts).UTC(), time.UnixMilli(created).UTC(), []byte(def)
	return r, nil
}

// Activity returns the activity with id.
func (s *Store) Activity(ctx context.Context, id string) (ActivityRecord, error) {
	r, err := scanActivity(s.db.QueryRowContext(ctx, s.q(`SELECT `+activityCols+` FROM activities WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("store: activity: %w", err)
	}
	return r, nil
}

// RoomActivities lists a room's activities by start time (at most 200).
func (s *Store) RoomActivities(ctx context.Context, room string) ([]ActivityRecord, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+activityCols+` FROM activities WHERE room = ? ORDER BY starts_at, id LIMIT 200`), room)
	if err != nil {
		return nil, fmt.Errorf("store: activities: %w", err)
	}
	defer rows.Close()
	var out []ActivityRecord
	for rows.Next() {
		r, err := scanActivity(rows)
		if err != nil {
			return nil, fmt.Errorf("store: activities: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SetActivityStatus records an activity's status (for lists; the live
// state decides).
func (s *Store) SetActivityStatus(ctx context.Context, id, status string) error {
	return s.exec1(ctx, `UPDATE activities SET status = ? WHERE id = ?`, status, id)
}

// insertRowsChunk bounds the rows of one multi-row INSERT: 500 rows of at
// most 6 columns stay far below every engine's limit on bound parameters
// (SQLite 32,766, PostgreSQL and MySQL 65,535) and keep a statement's text
// small, while a settlement of 1,000,000 winners is 2,000 statements, not
// 1,000,000.
const insertRowsChunk = 500

// insertIgnore is INSERT of rows rows that skips each row whose key exists.
func (s *Store) insertIgnore(table, cols string, ncols, rows int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", ncols), ", ") + ")"
	vals := strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
	if s.dialect == mysql {
		return `INSERT IGNORE INTO ` + table + ` (` + cols + `) VALUES ` + vals
	}
	return s.q(`INSERT INTO ` + table + ` (` + cols + `) VALUES ` + vals + ` ON CONFLICT DO NOTHING`)
}

// insertIgnoreRows inserts n rows into table within tx, insertRowsChunk
// to a statement, skipping rows whose key exists; row appends row i's
// ncols values to args. The rows go in the order given, so concurrent
// settlements of the same rows take their locks in the same order.
func (s *Store) insertIgnoreRows(ctx context.Context, tx *sql.Tx, table, cols string, ncols, n int, row func(args []any, i int) []any) error {
	var q string // the statement for qRows rows: built again only for the last, shorter chunk
	qRows := 0
	args := make([]any, 0, ncols*min(n, insertRowsChunk))
	for i := 0; i < n; i += insertRowsChunk {
		k := min(insertRowsChunk, n-i)
		if k != qRows {
			q, qRows = s.insertIgnore(table, cols, ncols, k), k
		}
		args = args[:0]
		for j := i; j < i+k; j++ {
			args = row(args, j)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("%s rows %d–%d: %w", table, i, i+k-1, err)
		}
	}
	return nil
}

// cardsUpsert adds cards to a user's revival cards (args: user, cards).
func (s *Store) cardsUpsert() string {
	if s.dialect == mysql {
		return `INSERT INTO activity_cards (user_id, granted) VALUES (?, ?) ON DUPLICATE KEY UPDATE granted = granted + VALUES(granted)`
	}
	return s.q(`INSERT INTO activity_cards (user_id, granted) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET granted = activity_cards.granted + excluded.granted`)
}

// GrantCards adds n revival cards to user and returns their balance.
func (s *Store) GrantCards(ctx context.Context, user string, n int) (int, error) {
	if _, err := s.db.ExecContext(ctx, s.cardsUpsert(), user, n); err != nil {
		return 0, fmt.Errorf("store: grant cards: %w", err)
	}
	m, err := s.Cards(ctx, []string{user})
	return m[user], err
}

// Cards returns the revival cards each user holds (granted minus used);
// users without cards are absent.
func (s *Store) Cards(ctx context.Context, users []string) (map[string]int, error) {
	out := map[string]int{}
	for len(users) > 0 {
		k := min(len(users), 500)
		args := make([]any, k)
		for i, u := range users[:k] {
			args[i] = u
		}
		users = users[k:]
		ph := strings.TrimSuffix(strings.Repeat("?, ", k), ", ")
		rows, err := s.db.QueryContext(ctx, s.q(`SELECT c.user_id, c.granted - (SELECT COUNT(*) FROM activity_card_uses u WHERE u.user_id = c.user_id)
			FROM activity_cards c WHERE c.user_id IN (`+ph+`)`), args...)
		if err != nil {
			return nil, fmt.Errorf("store: cards: %w", err)
		}
		for rows.Next() {
			var u string
			var n int
			if err := rows.Scan(&u, &n); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: cards: %w", err)
			}
			if n > 0 {
				out[u] = n
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: cards: %w", err)
		}
	}
	return out, nil
}

// Settle writes an activity's results in one transaction: its prizes, the
// revival cards it used and its status. Rows already written are kept, so a
// retried or concurrent settlement pays nobody twice.
func (s *Store) Settle(ctx context.Context, activity, status string, prizes []Prize, cardUsers []string, at time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: settle: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	ms := at.UnixMilli()
	err = s.insertIgnoreRows(ctx, tx, "prizes", "activity, user_id, kind, amount_cents, at", 5, len(prizes), func(args []any, i int) []any {
		p := prizes[i]
		return append(args, activity, p.User, p.Kind, p.AmountCents, ms)
	})
	if err != nil {
		return fmt.Errorf("store: settle %s: %w", activity, err)
	}
	err = s.insertIgnoreRows(ctx, tx, "activity_card_uses", "activity, user_id, at", 3, len(cardUsers), func(args []any, i int) []any {
		return append(args, activity, cardUsers[i], ms)
	})
	if err != nil {
		return fmt.Errorf("store: settle %s: %w", activity, err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE activities SET status = ? WHERE id = ?`), status, activity); err != nil {
		return fmt.Errorf("store: settle %s: %w", activity, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: settle %s: %w", activity, err)
	}
	return nil
}

// ActivityPrizes lists what an activity paid, of kind (all kinds if empty),
// in user order.
func (s *Store) ActivityPrizes(ctx context.Context, activity, kind string) ([]Prize, error) {
	return s.prizes(ctx, `activity = ? AND (? = '' OR kind = ?) ORDER BY user_id`, activity, kind, kind)
}

// UserPrizes lists what user won, quiz prizes and rain packets, newest
// first (at most 500).
func (s *Store) UserPrizes(ctx context.Context, user string) ([]Prize, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT activity, user_id, kind, amount_cents, at, -1, -1 FROM prizes WHERE user_id = ?
		UNION ALL SELECT activity, user_id, 'rain', amount_cents, at, rain, packet FROM rain_packets WHERE user_id = ?
		ORDER BY 5 DESC, 1, 6, 7 LIMIT 500`), user, user)
	if err != nil {
		return nil, fmt.Errorf("store: prizes: %w", err)
	}
	return scanPrizes(rows)
}

// PrizesTotal is the sum of everything user won (quiz prizes and rain packets).
func (s *Store) PrizesTotal(ctx context.Context, user string) (int64, error) {
	var a, b int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COALESCE((SELECT SUM(amount_cents) FROM prizes WHERE user_id = ?), 0),
		COALESCE((SELECT SUM(amount_cents) FROM rain_packets WHERE user_id = ?), 0)`), user, user).Scan(&a, &b)
	if err != nil {
		return 0, fmt.Errorf("store: prizes total: %w", err)
	}
	return a + b, nil
}

func (s *Store) prizes(ctx context.Context, where string, args ...any) ([]Prize, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT activity, user_id, kind, amount_cents, at, -1, -1 FROM prizes WHERE `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("store: prizes: %w", err)
	}
	return scanPrizes(rows)
}

func scanPrizes(rows *sql.Rows) ([]Prize, error) {
	defer rows.Close()
	out := []Prize{}
	for rows.Next() {
		var p Prize
		var rain, packet int
		if err := rows.Scan(&p.Activity, &p.User, &p.Kind, &p.AmountCents, &p.At, &rain, &packet); err != nil {
			return nil, fmt.Errorf("store: prizes: %w", err)
		}
		if rain >= 0 {
			p.Rain, p.Packet = &rain, &packet
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// SavePackets writes rain k's packets paid; rows already written are kept.
func (s *Store) SavePackets(ctx context.Context, activity string, k int, ps []RainPacket) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: rain packets: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	err = s.insertIgnoreRows(ctx, tx, "rain_packets", "activity, rain, packet, user_id, amount_cents, at", 6, len(ps), func(args []any, i int) []any {
		p := ps[i]
		return append(args, activity, k, p.N, p.User, p.AmountCents, p.At)
	})
	if err != nil {
		return fmt.Errorf("store: rain packets %s/%d: %w", activity, k, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: rain packets %s/%d: %w", activity, k, err)
	}
	return nil
}

// RainPackets lists rain k's packets in SQL, in packet order.
func (s *Store) RainPackets(ctx context.Context, activity string, k int) ([]RainPacket, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT packet, user_id, amount_cents, at FROM rain_packets WHERE activity = ? AND rain = ? ORDER BY packet`), activity, k)
	if err != nil {
		return nil, fmt.Errorf("store: rain packets: %w", err)
	}
	defer rows.Close()
	out := []RainPacket{}
	for rows.Next() {
		var p RainPacket
		if err := rows.Scan(&p.N, &p.User, &p.AmountCents, &p.At); err != nil {
			return nil, fmt.Errorf("store: rain packets: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// LoadLive returns every saved live-state snapshot by activity.
func (s *Store) LoadLive(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT activity, snapshot FROM activity_live`)
	if err != nil {
		return nil, fmt.Errorf("store: live state: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id, snap string
		if err := rows.Scan(&id, &snap); err != nil {
			return nil, fmt.Errorf("store: live state: %w", err)
		}
		out[id] = []byte(snap)
	}
	return out, rows.Err()
}

// SaveLive stores an activity's live-state snapshot.
func (s *Store) SaveLive(ctx context.Context, id string, snapshot []byte) error {
	q := `INSERT INTO activity_live (activity, snapshot) VALUES (?, ?) ON CONFLICT (activity) DO UPDATE SET snapshot = excluded.snapshot`
	if s.dialect == mysql {
		q = `INSERT INTO activity_live (activity, snapshot) VALUES (?, ?) ON DUPLICATE KEY UPDATE snapshot = VALUES(snapshot)`
	}
	if _, err := s.db.ExecContext(ctx, s.q(q), id, string(snapshot)); err != nil {
		return fmt.Errorf("store: save live state: %w", err)
	}
	return nil
}
