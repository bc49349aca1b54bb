package moderation

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	f := NewFilter("spam, BadWord", false)
	if _, ok := f.Check("this is SPAM"); ok {
		t.Fatal("reject mode let a blocked word through")
	}
	if text, ok := f.Check("fine"); !ok || text != "fine" {
		t.Fatal("clean text refused")
	}
	m := NewFilter("spam,İx", true)
	if text, ok := m.Check("No SPAM here, Spam!"); !ok || text != "No **** here, ****!" {
		t.Fatalf("mask: %q", text)
	}
	// A rune whose lower case has another byte length must not disturb the rest.
	if text, _ := m.Check("ÅBC İx Ok"); text != "ÅBC ** Ok" {
		t.Fatalf("mask with case folding: %q", text)
	}
}

func TestRateLimitBucket(t *testing.T) {
	m := NewMemory(3, 10*time.Second)
	now := time.Unix(1000, 0)
	m.rate.now = func() time.Time { return now }
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if ok, _, _ := m.Allow(ctx, "u"); !ok {
			t.Fatalf("send %d refused", i)
		}
	}
	ok, wait, _ := m.Allow(ctx, "u")
	if ok || wait <= 0 || wait > 10*time.Second/3+time.Millisecond {
		t.Fatalf("4th send: ok=%v wait=%v", ok, wait)
	}
	if ok, _, _ := m.Allow(ctx, "other"); !ok {
		t.Fatal("limits must be per user")
	}
	now = now.Add(wait)
	if ok, _, _ := m.Allow(ctx, "u"); !ok {
		t.Fatal("not allowed after waiting retry_after")
	}
}

// TestLimiterEvictsIdle: a bucket idle for a window is dropped at the next
// sweep, so memory follows the users who sent recently.
func TestLimiterEvictsIdle(t *testing.T) {
	l := NewLimiter(5, 10*time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprint("u", i))
	}
	if n := l.Len(); n != 1000 {
		t.Fatalf("%d buckets, want 1000", n)
	}
	now = now.Add(10 * time.Second)
	l.Allow("late")
	if n := l.Len(); n != 1 {
		t.Fatalf("%d buckets after a window idle, want 1", n)
	}
}
