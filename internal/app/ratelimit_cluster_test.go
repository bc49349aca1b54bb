package app

import (
	"testing"

	"roomcast/internal/auth"
	"roomcast/internal/redistest"
)

// TestClusterRateLimitScope: in cluster mode the default rate limit is kept
// by each node (no Redis command per send): a user over the limit on one
// node gets 429 rate_limited with retry_after_ms there, while another node
// has its own bucket; --rate-limit-scope cluster shares one bucket.
func TestClusterRateLimitScope(t *testing.T) {
	c := redistest.Client(t)
	db := redistest.Postgres(t)
	for _, tc := range []struct {
		scope     string
		otherCode int // the 4th send, through the other node
	}{{"node", 201}, {"cluster", 429}} {
		t.Run(tc.scope, func(t *testing.T) {
			args := append(clusterArgs("redis://"+redistest.RedisAddr+"/0", redistest.Prefix(t, c), db),
				"--rate-limit", "3/10s", "--rate-limit-scope", tc.scope)
			_, cl := startNodes(t, 2, args)
			a, b := cl[0], cl[1]
			a.createRoom("r-" + tc.scope)
			room := "r-" + tc.scope
			tok := a.token("chatty", auth.RoleViewer, 1)
			for i := 0; i < 3; i++ {
				if code, ans := a.send(room, tok, map[string]string{"kind": "chat", "text": "hi"}); code != 201 {
					t.Fatalf("send %d: %d %+v", i, code, ans)
				}
			}
			code, ans := a.send(room, tok, map[string]string{"kind": "chat", "text": "too much"})
			if code != 429 || ans.Error == nil || ans.Error.Code != "rate_limited" || ans.RetryAfterMS <= 0 {
				t.Fatalf("4th send on the same node: want 429 rate_limited with retry_after_ms, got %d %+v", code, ans)
			}
			if code, ans := b.send(room, tok, map[string]string{"kind": "chat", "text": "elsewhere"}); code != tc.otherCode {
				t.Fatalf("4th send through the other node: %d %+v, want %d", code, ans, tc.otherCode)
			}
		})
	}
}
