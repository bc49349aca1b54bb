package gateway

import (
	"context"
	"errors"
	"io"
	"testing"

	"roomcast/internal/auth"
	"roomcast/internal/fanout"
	"roomcast/internal/keepalive"
)

// A poll read on the keep-alive path is answered with the bytes net/http's
// path gives for the same request; whatever would be an error there is
// declined, so net/http answers it with its error.
func TestKeptPollMatchesNetHTTP(t *testing.T) {
	r := newRig(t, nil)
	r.node.set(func(f *fakeNode) { f.answer = fanout.PollAnswer{Cursor: 12, Epoch: "e1", Online: 3, Likes: 5} })
	tok := r.token(t, "u1", auth.RoleViewer, 2)
	for _, q := range []struct{ query, authz string }{
		{"cursor=3&limit=15", ""},
		{"cursor=3&epoch=e1&sid=s1", ""},
		{"", ""}, // a first poll
		{"cursor=3&user_cursor=4", "Bearer " + tok},
		{"cursor=3&token=" + tok, ""},
	} {
		resp := r.call(t, "GET", "/api/rooms/a/messages?"+q.query, trimBearer(q.authz), "")
		want, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("net/http %q: %d %s", q.query, resp.StatusCode, want)
		}
		got, ok := r.gw.keptPoll(context.Background(), &keepalive.Request{Path: "/api/rooms/a/messages", Query: q.query,
			Authorization: q.authz, RemoteAddr: "127.0.0.1:5"}, nil)
		if !ok || string(got) != string(want) {
			t.Errorf("kept %q: %v %s, net/http %s", q.query, ok, got, want)
		}
	}
	for _, d := range []struct{ path, query, authz string }{
		{"/api/rooms/a/messages/", "cursor=1", ""},
		{"/api/rooms/a%62/messages", "cursor=1", ""}, // escaped: net/http decodes it
		{"/api/rooms//messages", "cursor=1", ""},
		{"/api/room/a/messages", "cursor=1", ""},
		{"/x/api/rooms/a/messages", "cursor=1", ""},
		{"/api/rooms/missing/messages", "cursor=1", ""},
		{"/api/rooms/a/messages", "cursor=x", ""},
		{"/api/rooms/a/messages", "limit=0", ""},
		{"/api/rooms/a/messages", "a=%zz", ""},
		{"/api/rooms/a/messages", "cursor=1", "Bearer garbage"},
	} {
		if _, ok := r.gw.keptPoll(context.Background(), &keepalive.Request{Path: d.path, Query: d.query, Authorization: d.authz,
			RemoteAddr: "127.0.0.1:5"}, nil); ok {
			t.Errorf("kept path answered %s?%s (auth %q), want it declined", d.path, d.query, d.authz)
		}
	}
	// A store failure is declined too (net/http answers 503).
	r.node.set(func(f *fakeNode) { f.pollErr = errors.New("store down") })
	if _, ok := r.gw.keptPoll(context.Background(), &keepalive.Request{Path: "/api/rooms/a/messages", Query: "cursor=1"}, nil); ok {
		t.Error("kept path answered a poll whose store failed")
	}
}

func trimBearer(s string) string {
	if len(s) > len("Bearer ") {
		return s[len("Bearer "):]
	}
	return s
}
