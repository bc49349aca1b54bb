package store

import (
	"context"
	"testing"
	"time"
)

// TestSideNeverHoldsTheStore: on SQLite a transaction open on the side
// connection (the archive writer's) does not make the store's reads wait,
// and a store write waits for the side's commit instead of failing.
func TestSideNeverHoldsTheStore(t *testing.T) {
	ctx := context.Background()
	st, err := OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateRoom(ctx, Room{ID: "r1", Title: "t", AnchorID: "a1", StreamKey: "k1", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	side, err := st.Side()
	if err != nil {
		t.Fatal(err)
	}
	defer side.Close()
	if side == st {
		t.Fatal("SQLite side is the store itself")
	}
	tx, err := side.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // committed below
	if _, err := tx.ExecContext(ctx, `INSERT INTO settings (k, v) VALUES ('side', '1')`); err != nil {
		t.Fatal(err)
	}
	// The side holds SQLite's write lock; the store's only connection is free.
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	r, err := st.Room(rctx, "r1")
	cancel()
	if err != nil || r.StreamKey != "k1" {
		t.Fatalf("read during the side's transaction: %+v %v", r, err)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- st.SetSetting(ctx, "main", "2") }()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("store write beside the side's transaction: %v", err)
	}
	for k, want := range map[string]string{"side": "1", "main": "2"} {
		if v, err := st.Setting(ctx, k); err != nil || v != want {
			t.Errorf("setting %s = %q, %v; want %q", k, v, err, want)
		}
	}
}
