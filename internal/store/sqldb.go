package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver ("pgx")
)

// Open opens the shared durable store that the URL names, so every node of
// a cluster sees the same rooms, keys and settings (issue 5):
//
//	postgres://user:pass@host:5432/db?sslmode=disable   (or postgresql://)
//	mysql://user:pass@host:3306/db                       (MySQL or MariaDB)
//
// The schema is created if needed, under a database lock so nodes starting
// together do not race.
func Open(ctx context.Context, dsn string) (*Store, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: --db: %w", err)
	}
	var db *sql.DB
	var d dialect
	switch u.Scheme {
	case "postgres", "postgresql":
		if db, err = sql.Open("pgx", dsn); err != nil {
			return nil, fmt.Errorf("store: open postgres: %w", err)
		}
		d = postgres
	case "mysql":
		cfg, err := mysqlConfig(u)
		if err != nil {
			return nil, err
		}
		conn, err := gomysql.NewConnector(cfg)
		if err != nil {
			return nil, fmt.Errorf("store: open mysql: %w", err)
		}
		db, d = sql.OpenDB(conn), mysql
	default:
		return nil, fmt.Errorf("store: --db: unsupported scheme %q (want postgres:// or mysql://)", u.Scheme)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, dialect: d}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("--db: cannot reach the %s database at %s (is it running, and is the address right?): %w", u.Scheme, u.Host, err)
	}
	if err := s.migrate(pctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// mysqlConfig turns mysql://user:pass@host:port/db?params into the driver's
// configuration. Update counts are rows matched (clientFoundRows), as the
// other databases report them.
func mysqlConfig(u *url.URL) (*gomysql.Config, error) {
	host := u.Host
	if !strings.Contains(host, ":") {
		host += ":3306"
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
		if p, ok := u.User.Password(); ok {
			user += ":" + p
		}
	}
	q := u.Query()
	if !q.Has("charset") {
		q.Set("charset", "utf8mb4")
	}
	cfg, err := gomysql.ParseDSN(user + "@tcp(" + host + ")/" + strings.TrimPrefix(u.Path, "/") + "?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: --db mysql: %w", err)
	}
	cfg.ClientFoundRows = true
	return cfg, nil
}

// ddlExec runs one schema statement.
type ddlExec func(ctx context.Context, q string) error

// withSchemaLock runs fn holding a database-wide lock on the shared
// databases (PostgreSQL advisory lock, MySQL GET_LOCK) on one connection, so
// concurrent CREATE ... IF NOT EXISTS from several nodes cannot collide.
// For MySQL it also adapts the statements (see mysqlDDL).
func (s *Store) withSchemaLock(ctx context.Context, fn func(exec ddlExec) error) error {
	if s.dialect == sqlite {
		return fn(func(ctx context.Context, q string) error { _, err := s.db.ExecContext(ctx, q); return err })
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer conn.Close()
	lock, unlock := `SELECT pg_advisory_lock(72710517)`, `SELECT pg_advisory_unlock(72710517)`
	if s.dialect == mysql {
		lock, unlock = `SELECT GET_LOCK('roomcast_schema', 60)`, `SELECT RELEASE_LOCK('roomcast_schema')`
	}
	if _, err := conn.ExecContext(ctx, lock); err != nil {
		return fmt.Errorf("store: migrate: lock: %w", err)
	}
	defer conn.ExecContext(context.Background(), unlock) //nolint:errcheck // released with the session anyway
	return fn(func(ctx context.Context, q string) error {
		if s.dialect == mysql {
			return mysqlDDL(ctx, conn, q)
		}
		_, err := conn.ExecContext(ctx, q)
		return err
	})
}

// mysqlDDL runs a statement written for SQLite/PostgreSQL on MySQL or
// MariaDB: tables get utf8mb4 with binary collation (ids and keys compare
// case-sensitively, as elsewhere), and CREATE INDEX IF NOT EXISTS, which
// MySQL lacks, becomes CREATE [UNIQUE] INDEX with "duplicate key name" ignored.
func mysqlDDL(ctx context.Context, conn *sql.Conn, q string) error {
	trimmed := strings.TrimSpace(q)
	upper := strings.ToUpper(trimmed)
	switch {
	case strings.HasPrefix(upper, "CREATE TABLE"):
		q = trimmed + " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
	case strings.HasPrefix(upper, "CREATE INDEX IF NOT EXISTS"):
		q = "CREATE INDEX" + trimmed[len("CREATE INDEX IF NOT EXISTS"):]
	case strings.HasPrefix(upper, "CREATE UNIQUE INDEX IF NOT EXISTS"):
		q = "CREATE UNIQUE INDEX" + trimmed[len("CREATE UNIQUE INDEX IF NOT EXISTS"):]
	}
	_, err := conn.ExecContext(ctx, q)
	var me *gomysql.MySQLError
	if errors.As(err, &me) && me.Number == 1061 { // ER_DUP_KEYNAME: the index exists
		return nil
	}
	return err
}
