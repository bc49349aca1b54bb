package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestMain runs the test binary as the server child when run() starts it.
func TestMain(m *testing.M) {
	if addr := os.Getenv(serverEnv); addr != "" {
		if err := serve(addr); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestPatterns runs each pattern briefly and checks that operations were
// served and measured; the figures themselves are for benchmarks, not tests.
func TestPatterns(t *testing.T) {
	for _, c := range []config{
		{Pattern: "tap", Conns: 20, Rate: 50, Size: 200, Window: time.Second},
		{Pattern: "quiz", Conns: 20, Rate: 1, Size: 200, Every: 50 * time.Millisecond, Window: time.Second},
		{Pattern: "push", Conns: 20, Rate: 1, Size: 800, Every: 20 * time.Millisecond, Window: time.Second},
	} {
		t.Run(c.Pattern, func(t *testing.T) {
			r, err := run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if r.Ops <= 0 || r.WindowS <= 0 || r.ServerCPU < 0 {
				t.Fatalf("nothing measured: %+v", r)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []config{
		{Pattern: "nope", Conns: 1, Rate: 1, Size: 1, Window: time.Second},
		{Pattern: "tap", Conns: 0, Rate: 1, Size: 1, Window: time.Second},
		{Pattern: "push", Conns: 1, Rate: 1, Size: 2 << 20, Window: time.Second},
	} {
		if _, err := run(context.Background(), c); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
}
