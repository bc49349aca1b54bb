package bench

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"roomcast/internal/app"
	"roomcast/internal/auth"
	"roomcast/internal/config"
)

// TestBenchWSFormatProto runs `bench ws` against a real roomcast in both
// encodings: the protobuf readers decode with the generated types and see
// every message, gap-free, in fewer bytes than the JSON readers.
func TestBenchWSFormatProto(t *testing.T) {
	cfg := config.Default()
	cfg.HTTP, cfg.RTMP, cfg.Data = "127.0.0.1:0", "", t.TempDir()
	cfg.Secret, cfg.AdminKey, cfg.RateLimit, cfg.RenderBudget = "s3cret-0123456789", "admin-key", "0", 0
	ctx := context.Background()
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	base := "http://" + a.HTTPAddr()
	tok, err := a.Signer.Sign(auth.Claims{Sub: "anchor", Name: "anchor", Level: 50, Role: auth.RoleAnchor}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", base+"/api/rooms", strings.NewReader(`{"id":"pb","title":"proto bench"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create room: %d", resp.StatusCode)
	}
	per := map[string]float64{}
	for _, format := range []string{"json", "proto"} {
		rep, err := runBench(t, nil, "ws", "--url", base, "--room", "pb", "--format", format, "--conns", "10",
			"--ramp", "0", "--settle", "0s", "--duration", "700ms", "--drain", "10s", "--send-rate", "40", "--senders", "2",
			"--secret", cfg.Secret, "--ping", "100ms")
		if err != nil {
			t.Fatalf("%s: err %v, violations %v", format, err, rep.Violations)
		}
		d, s, sq := rep.Delivery, rep.Send, rep.Seq
		if rep.Conns.Connected != 10 || s.Acked == 0 || d.BenchMessages != s.Acked*10 || d.Lost != 0 ||
			d.BadFrames != 0 || d.ErrorFrames != 0 || sq.Gaps+sq.Dups+sq.Reorders != 0 || d.Format != format || d.Bytes == 0 {
			t.Fatalf("%s: conns %+v delivery %+v send %+v seq %+v", format, rep.Conns, d, s, sq)
		}
		per[format] = d.BytesPerDelivery
	}
	if per["proto"] >= per["json"] {
		t.Fatalf("bytes per delivery: proto %.1f, json %.1f", per["proto"], per["json"])
	}
	t.Logf("bytes per delivery: json %.1f, proto %.1f", per["json"], per["proto"])
	if _, err := runBench(t, nil, "ws", "--url", base, "--room", "pb", "--format", "proto", "--send-via", "ws",
		"--send-rate", "1", "--duration", "10ms"); err == nil || !strings.Contains(err.Error(), "--send-via http") {
		t.Fatalf("proto with ws sends: %v", err)
	}
}
