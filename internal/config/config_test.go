package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(file, []byte(`{"http":":1","tick":"250ms","render-budget":7,"rate-limit":"9/1m","gifts":[{"id":"g","name":"G","value_cents":5}]}`), 0o600)
	env := map[string]string{"ROOMCAST_TICK": "300ms", "ROOMCAST_RENDER_BUDGET": "8"}
	c, err := Load("t", []string{"--config", file, "--render-budget", "9"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.RenderBudget != 9 || c.Tick != 300*time.Millisecond || c.HTTP != ":1" || c.RateLimit != "9/1m" || len(c.Gifts) != 1 {
		t.Fatalf("precedence wrong: %+v", c)
	}
	if _, err := Load("t", []string{"--rate-limit", "x/y"}, func(string) (string, bool) { return "", false }); err == nil {
		t.Fatal("bad rate accepted")
	}
	if _, err := Load("t", []string{"--rate-limit-scope", "room"}, func(string) (string, bool) { return "", false }); err == nil {
		t.Fatal("bad rate-limit scope accepted")
	}
	if c, err := Load("t", nil, func(string) (string, bool) { return "", false }); err != nil || c.RateLimitScope != "node" {
		t.Fatalf("default rate-limit scope %q (%v), want node", c.RateLimitScope, err)
	}
	os.WriteFile(file, []byte(`{"nope":1}`), 0o600)
	if _, err := Load("t", []string{"--config", file}, func(string) (string, bool) { return "", false }); err == nil {
		t.Fatal("unknown config key accepted")
	}
}

func TestDefaultsAndTables(t *testing.T) {
	c := Default()
	if c.HTTP != ":8080" || c.RTMP != ":1935" || c.RenderBudget != 20 || c.Tick != 100*time.Millisecond || c.Data != "./data" {
		t.Fatalf("defaults: %+v", c)
	}
	r, err := ParseRate("5/10s")
	if err != nil || r.N != 5 || r.Per != 10*time.Second {
		t.Fatalf("rate: %+v %v", r, err)
	}
	if r, _ := ParseRate("0"); !r.Off() {
		t.Fatal("0 must be off")
	}
	steps, err := ParsePollIntervals(c.PollIntervals)
	if err != nil || len(steps) != 3 || steps[2].Under != 0 || steps[0].MS != 1500 {
		t.Fatalf("poll steps: %+v %v", steps, err)
	}
	if _, err := NormalizePollSteps([]PollStep{{Under: -1, MS: 1000}, {MS: 2000}}); err == nil {
		t.Fatal("negative threshold accepted")
	}
}

// Issue 14: --media-batch 0 means off (not the default), negative is
// refused; the placement flags check their ranges.
func TestMediaBatchAndPlacementFlags(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	c := Default()
	if c.MediaBatch != 40*time.Millisecond || c.HotRoom != 5000 || c.PlacementBalance != 1.25 || c.Weight != 1 || c.Advertise != "" {
		t.Fatalf("defaults: media-batch %v hot-room %d balance %v weight %v advertise %q", c.MediaBatch, c.HotRoom, c.PlacementBalance, c.Weight, c.Advertise)
	}
	c, err := Load("t", []string{"--media-batch", "0", "--advertise", "https://edge-1.example.com:8443/"}, none)
	if err != nil || c.MediaBatch != 0 || c.Advertise != "https://edge-1.example.com:8443" {
		t.Fatalf("--media-batch 0: %v, advertise %q, %v", c.MediaBatch, c.Advertise, err)
	}
	for _, bad := range [][]string{{"--media-batch", "-1ms"}, {"--placement-balance", "1"}, {"--weight", "0"},
		{"--hot-room", "-1"}, {"--advertise", "edge-1:8080"}, {"--advertise", "http://h:1/path"}} {
		if _, err := Load("t", bad, none); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
