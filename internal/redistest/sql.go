package redistest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // MariaDB admin connection
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL admin connection

	"roomcast/internal/auth"
)

// Postgres creates a fresh database on the machine's PostgreSQL, dropped
// after the test, and returns its postgres:// URL.
func Postgres(t testing.TB) string {
	t.Helper()
	NeedServices(t)
	name := "rc_" + auth.RandomHex(6)
	admin := "postgres://postgres@" + PostgresAddr + "/postgres?sslmode=disable"
	createDB(t, "pgx", admin, `CREATE DATABASE `+name, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	return "postgres://postgres@" + PostgresAddr + "/" + name + "?sslmode=disable"
}

// MySQL creates a fresh database on the machine's MariaDB, dropped after the
// test, and returns its mysql:// URL.
func MySQL(t testing.TB) string {
	t.Helper()
	NeedServices(t)
	name := "rc_" + auth.RandomHex(6)
	createDB(t, "mysql", "root@tcp("+MySQLAddr+")/", `CREATE DATABASE `+name+` CHARACTER SET utf8mb4`, `DROP DATABASE IF EXISTS `+name)
	return "mysql://root@" + MySQLAddr + "/" + name
}

func createDB(t testing.TB, driver, dsn, create, drop string) {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("%s: %v", driver, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, create); err != nil {
		db.Close()
		t.Fatalf("%s: %s: %v", driver, create, err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, drop); err != nil {
			t.Errorf("%s: %s: %v", driver, drop, err)
		}
	})
}
