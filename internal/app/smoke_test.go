package app

import (
	"context"
	"testing"
	"time"

	"roomcast/internal/auth"
)

func TestSmoke(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("smoke")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := s.dial(ctx, "room=smoke")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	f, err := c.next(ctx, "batch")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first batch: %+v", f)
	tok := s.token("u1", auth.RoleViewer, 3)
	code, a := s.send("smoke", tok, map[string]string{"kind": "chat", "text": "hello"})
	t.Logf("send: %d %+v", code, a)
	f, err = c.next(ctx, "batch")
	t.Logf("batch: %+v %v", f, err)
	p := s.poll("smoke", nil, 15)
	t.Logf("poll: %+v", p)
}
