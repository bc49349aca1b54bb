package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"roomcast/internal/app"
	"roomcast/internal/auth"
	"roomcast/internal/config"
)

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"token", "--data", dir, "--sub", "u1", "--name", "Alice", "--level", "10", "--role", "anchor", "--ttl", "1h"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	tok := strings.TrimSpace(out.String())
	// The token verifies with the secret kept in that data dir.
	cfg := config.Default()
	cfg.Data = dir
	st, err := app.OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	secret, adminKey, err := app.Secrets(context.Background(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := auth.NewSigner(secret)
	c, err := signer.Verify(tok)
	if err != nil || c.Sub != "u1" || c.Name != "Alice" || c.Level != 10 || c.Role != "anchor" {
		t.Fatalf("claims %+v err %v", c, err)
	}
	out.Reset()
	if code := run([]string{"token", "--data", dir, "--admin-key"}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != adminKey {
		t.Fatalf("admin key: %d %q", code, out.String())
	}
	if code := run([]string{"token", "--data", dir, "--sub", "u2", "--role", "king"}, &out, &errb); code != 1 {
		t.Fatalf("bad role accepted: %d", code)
	}
}

func TestCommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "roomcast ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run([]string{"nope"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
	if code := run([]string{"serve", "--render-budget", "-1"}, &out, &errb); code != 1 {
		t.Fatalf("bad flag value accepted: %d", code)
	}
}

// TestServeUnreachableDB (issue 8): serve with a --db nobody answers exits
// with 1 and a message naming the database, instead of panicking.
func TestServeUnreachableDB(t *testing.T) {
	for _, db := range []string{"postgres://postgres@127.0.0.1:1/x?sslmode=disable", "mysql://root@127.0.0.1:1/x"} {
		var out, errb bytes.Buffer
		code := run([]string{"serve", "--http", "127.0.0.1:0", "--rtmp", "", "--data", t.TempDir(), "--db", db}, &out, &errb)
		if msg := errb.String(); code != 1 || !strings.Contains(msg, "--db: cannot reach the") || !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "panic") {
			t.Fatalf("serve --db %s: exit %d, stderr %q", db, code, msg)
		}
	}
}
