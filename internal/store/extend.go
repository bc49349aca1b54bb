package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// The helpers below let other packages keep their own tables (recorded
// sessions, the danmaku archive) in the same database without knowing which
// SQL dialect it speaks.

// Migrate runs schema statements written for SQLite/PostgreSQL (CREATE
// TABLE/INDEX IF NOT EXISTS) on this database, under the same lock and
// MySQL adaptations as the store's own schema.
func (s *Store) Migrate(ctx context.Context, stmts ...string) error {
	return s.withSchemaLock(ctx, func(exec ddlExec) error {
		for _, q := range stmts {
			if err := exec(ctx, q); err != nil {
				return fmt.Errorf("store: migrate: %w", err)
			}
		}
		return nil
	})
}

// Rebind rewrites ? placeholders for the dialect ($1… on PostgreSQL).
func (s *Store) Rebind(q string) string { return s.q(q) }

// InsertIgnore turns "INSERT INTO t (…) VALUES (…)" into the dialect's
// insert that silently skips rows whose unique key already exists, with
// placeholders rebound.
func (s *Store) InsertIgnore(q string) string { return s.q(s.InsertIgnoreRaw(q)) }

// InsertIgnoreRaw is InsertIgnore without rebinding, for queries passed
// on to Exec (which rebinds).
func (s *Store) InsertIgnoreRaw(q string) string {
	if s.dialect == mysql {
		return strings.Replace(q, "INSERT INTO", "INSERT IGNORE INTO", 1)
	}
	return q + " ON CONFLICT DO NOTHING"
}

// Shared reports whether the database is a shared server (PostgreSQL,
// MySQL) that several nodes may use, rather than the node's own SQLite.
func (s *Store) Shared() bool { return s.dialect != sqlite }

// Exec runs q (with ? placeholders) and returns the rows affected.
func (s *Store) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q(q), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Query runs q (with ? placeholders).
func (s *Store) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.q(q), args...)
}

// QueryRow runs q (with ? placeholders) for one row.
func (s *Store) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.q(q), args...)
}

// Prepare prepares q (with ? placeholders) for repeated use; the caller
// closes the statement.
func (s *Store) Prepare(ctx context.Context, q string) (*sql.Stmt, error) {
	return s.db.PrepareContext(ctx, s.q(q))
}

// Side returns a store for a background writer (the danmaku archive) whose
// transactions must never make this store's queries wait. On SQLite it is a
// second connection to the same database: in WAL mode this store's reads
// proceed beside the writer's transaction, and a write of either waits for
// the other's commit (busy_timeout). On PostgreSQL and MySQL, pools already,
// it is s itself. The caller closes a side that is not s.
func (s *Store) Side() (*Store, error) {
	if s.dialect != sqlite {
		return s, nil
	}
	db, err := sql.Open("sqlite", s.dsn)
	if err != nil {
		return nil, fmt.Errorf("store: side connection: %w", err)
	}
	db.SetMaxOpenConns(1)
	return &Store{db: db, dialect: sqlite, dsn: s.dsn}, nil
}
