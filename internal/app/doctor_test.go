package app_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"roomcast/internal/app"
	"roomcast/internal/config"
	"roomcast/internal/redistest"
)

func doctorReport(t *testing.T, cfg *config.Config, now func() time.Time) (string, int) {
	t.Helper()
	var b strings.Builder
	n := app.Doctor(context.Background(), cfg, now, &b)
	return b.String(), n
}

// A healthy set-up (free ports, a writable data dir, the machine's Redis
// and PostgreSQL) has no problems; skewing this node's clock is found.
func TestDoctorHealthy(t *testing.T) {
	cfg := config.Default()
	cfg.HTTP, cfg.RTMP = freeAddr(t), freeAddr(t)
	cfg.Data = t.TempDir()
	cfg.Redis = "redis://" + redistest.RedisAddr + "/0"
	cfg.DB = redistest.Postgres(t)
	out, n := doctorReport(t, cfg, time.Now)
	if n != 0 || !strings.Contains(out, "No problems found") || !strings.Contains(out, "SQL database (--db) answers") || !strings.Contains(out, "Redis [") {
		t.Fatalf("%d problems:\n%s", n, out)
	}
	out, n = doctorReport(t, cfg, func() time.Time { return time.Now().Add(-5 * time.Second) })
	if n != 2 || strings.Count(out, "clock is 5") != 2 || strings.Count(out, "behind") != 2 || !strings.Contains(out, "NTP") {
		t.Fatalf("a 5 s clock skew: %d problems:\n%s", n, out)
	}
}

// Each broken part is named in words.
func TestDoctorFindsProblems(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.HTTP, cfg.RTMP = busy.Addr().String(), freeAddr(t)
	cfg.Data = filepath.Join(file, "data") // under a file: cannot be created
	cfg.Redis = "redis://" + freeAddr(t) + "/0"
	cfg.DB = "postgres://postgres:s3cret@" + freeAddr(t) + "/x?sslmode=disable"
	cfg.Transcode = "480p:1000k"
	t.Setenv("PATH", t.TempDir()) // no ffmpeg
	out, n := doctorReport(t, cfg, time.Now)
	for _, want := range []string{
		"FAIL  HTTP port " + cfg.HTTP + " (--http) is in use by another program",
		"ok    RTMP port " + cfg.RTMP + " (--rtmp) is free",
		"FAIL  data dir " + cfg.Data + " (--data) cannot be created",
		"FAIL  SQL database (--db) is unreachable",
		"FAIL  Redis " + strings.TrimSuffix(strings.TrimPrefix(cfg.Redis, "redis://"), "/0") + " (--redis) is unreachable: connect: connection refused",
		"WARN  ffmpeg is not installed: room pictures",
		"FAIL  ffmpeg is not installed, but --transcode needs it",
		"5 problems found.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor's report lacks %q", want)
		}
	}
	if strings.Contains(out, "s3cret") {
		t.Error("the report shows the database password")
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("report (%d problems):\n%s", n, out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
}
