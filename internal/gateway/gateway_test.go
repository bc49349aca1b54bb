package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/config"
	"roomcast/internal/errs"
	"roomcast/internal/fanout"
	"roomcast/internal/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// decodeBody reads a JSON response into v (nil: discard) and returns its status.
func decodeBody(t *testing.T, resp *http.Response, v any) int {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); v != nil && !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content type %q: %s", ct, raw)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
	}
	return resp.StatusCode
}

type apiError struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	} `json:"error"`
}

// expectError checks a response is the JSON error shape with status and code.
func expectError(t *testing.T, resp *http.Response, status int, code string) apiError {
	t.Helper()
	var e apiError
	if got := decodeBody(t, resp, &e); got != status || e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("got %d %+v, want %d %s", got, e, status, code)
	}
	return e
}

func TestErrorsAreJSON(t *testing.T) {
	r := newRig(t, nil)
	tok := r.token(t, "u1", auth.RoleViewer, 1)
	expectError(t, r.call(t, "GET", "/api/nope", "", ""), 404, errs.NotFound)
	expectError(t, r.call(t, "POST", "/api/rooms/a/messages", "", `{"kind":"chat","text":"x"}`), 401, errs.Unauthorized)
	expectError(t, r.call(t, "POST", "/api/rooms/a/messages", "garbage", `{"kind":"chat","text":"x"}`), 401, errs.BadToken)
	expectError(t, r.call(t, "POST", "/api/rooms/a/messages", tok, `{"kind":`), 400, errs.BadJSON)
	expectError(t, r.call(t, "POST", "/api/rooms/a/messages", tok, "{\"text\":\"\xff\"}"), 400, errs.InvalidUTF8)
	expectError(t, r.call(t, "POST", "/api/rooms/a/messages", tok, `{"text":"`+strings.Repeat("x", 70<<10)+`"}`), 413, errs.TooLarge)
	if n := len(r.svc.calls()); n != 0 {
		t.Fatalf("%d bad requests reached the service", n)
	}
	// A panic below the gateway is a 500 JSON error, not a dropped connection.
	r.svc.set(func(f *fakeService) { f.panics = true })
	expectError(t, r.call(t, "POST", "/api/rooms/a/messages", tok, `{"kind":"chat","text":"x"}`), 500, errs.Internal)
}

func TestSendMapsIdentityAndResult(t *testing.T) {
	r := newRig(t, nil)
	tok := r.token(t, "u1", auth.RoleViewer, 9)
	var ok struct {
		Seq      uint64 `json:"seq"`
		ID       string `json:"id"`
		TS       int64  `json:"ts"`
		Priority int    `json:"priority"`
		Likes    int64  `json:"likes"`
	}
	if st := decodeBody(t, r.call(t, "POST", "/api/rooms/a/messages", tok, `{"kind":"chat","text":"hi","id":"c1"}`), &ok); st != 201 ||
		ok.Seq != 1 || ok.ID != "m-1" || ok.TS != 1700 || ok.Priority != 130 {
		t.Fatalf("send: %d %+v", st, ok)
	}
	c := r.svc.calls()[0]
	if c.room != "a" || c.id.Claims.Sub != "u1" || c.id.Claims.Level != 9 || c.id.Admin || c.req.Text != "hi" || c.req.Kind != message.KindChat {
		t.Fatalf("service saw %+v", c)
	}
	if st := decodeBody(t, r.call(t, "POST", "/api/rooms/a/messages", tok, `{"kind":"like"}`), &ok); st != 202 || ok.Likes != 42 {
		t.Fatalf("like: %d %+v", st, ok)
	}
	// The admin key is an admin identity.
	decodeBody(t, r.call(t, "POST", "/api/rooms/a/messages", adminKey, `{"kind":"system","text":"x"}`), nil)
	if c := r.svc.calls()[2]; !c.id.Admin || c.id.Claims.Role != auth.RoleAdmin {
		t.Fatalf("admin key identity: %+v", c.id)
	}
	// The service's errors keep their code and status; a wait becomes Retry-After.
	e := errs.New(errs.RateLimited, "slow down")
	e.RetryAfterMS = 1500
	r.svc.set(func(f *fakeService) { f.err = e })
	resp := r.call(t, "POST", "/api/rooms/a/messages", tok, `{"kind":"chat","text":"hi"}`)
	if resp.Header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if got := expectError(t, resp, 429, errs.RateLimited); got.Error.RetryAfterMS != 1500 {
		t.Fatalf("retry_after_ms: %+v", got)
	}
}

func TestBroadcastNeedsRooms(t *testing.T) {
	r := newRig(t, nil)
	var out struct {
		ID    string `json:"id"`
		Rooms int    `json:"rooms"`
	}
	if st := decodeBody(t, r.call(t, "POST", "/api/broadcast", adminKey, `{"text":"maintenance"}`), &out); st != 201 || out.Rooms != 1 {
		t.Fatalf("broadcast: %d %+v", st, out)
	}
	if c := r.svc.calls()[0]; c.req.Scope != message.ScopeBroadcast || c.req.Kind != message.KindSystem {
		t.Fatalf("broadcast request: %+v", c.req)
	}
}

func TestPoll(t *testing.T) {
	r := newRig(t, nil)
	m := &message.Message{Seq: 5, ID: "x", Room: "a", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "<hi>"}
	r.node.set(func(f *fakeNode) {
		f.answer = fanout.PollAnswer{Messages: []*message.Message{m}, Cursor: 5, Online: 3, Likes: 11}
	})
	var out struct {
		Messages    []message.Message `json:"messages"`
		Cursor      uint64            `json:"cursor"`
		PollAfterMS int               `json:"poll_after_ms"`
		Reset       bool              `json:"reset"`
		Online      int               `json:"online"`
		Likes       int64             `json:"likes"`
		Stale       *bool             `json:"stale"`
	}
	if st := decodeBody(t, r.call(t, "GET", "/api/rooms/a/messages?cursor=4&limit=500&sid=tab1", "", ""), &out); st != 200 {
		t.Fatalf("poll: %d", st)
	}
	if len(out.Messages) != 1 || out.Messages[0].Text != "<hi>" || out.Cursor != 5 || out.Online != 3 || out.Likes != 11 ||
		out.PollAfterMS != 1500 || out.Reset || out.Stale != nil {
		t.Fatalf("answer %+v", out)
	}
	q := r.node.poll(0)
	if !q.HasCursor || q.Cursor != 4 || q.Limit != maxPollLimit || q.Member.Session != "p:tab1" {
		t.Fatalf("query %+v", q)
	}
	// Without a sid a user is one session, an anonymous poller its address.
	tok := r.token(t, "u1", auth.RoleViewer, 1)
	decodeBody(t, r.call(t, "GET", "/api/rooms/a/messages", tok, ""), nil)
	decodeBody(t, r.call(t, "GET", "/api/rooms/a/messages", "", ""), nil)
	if q := r.node.poll(1); q.Member.Session != "pu:u1" || q.Member.UserID != "u1" || q.HasCursor || q.Limit != defaultPollLimit {
		t.Fatalf("user poll %+v", q)
	}
	if q := r.node.poll(2); q.Member.Session != "pa:127.0.0.1" {
		t.Fatalf("anonymous poll %+v", q)
	}
	expectError(t, r.call(t, "GET", "/api/rooms/a/messages?cursor=-1", "", ""), 400, errs.BadRequest)
	expectError(t, r.call(t, "GET", "/api/rooms/a/messages?limit=0", "", ""), 400, errs.BadRequest)
	expectError(t, r.call(t, "GET", "/api/rooms/zz/messages", "", ""), 404, errs.RoomNotFound)
	r.node.set(func(f *fakeNode) { f.pollErr = errPlain })
	expectError(t, r.call(t, "GET", "/api/rooms/a/messages", "", ""), 503, errs.Unavailable)
}

func TestPrivateReadNeedsAToken(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.PublicRead = false })
	expectError(t, r.call(t, "GET", "/api/rooms/a/messages", "", ""), 401, errs.Unauthorized)
	tok := r.token(t, "u1", auth.RoleViewer, 1)
	if st := decodeBody(t, r.call(t, "GET", "/api/rooms/a/messages?token="+tok, "", ""), nil); st != 200 {
		t.Fatalf("poll with ?token=: %d", st)
	}
}

func TestRooms(t *testing.T) {
	r := newRig(t, nil)
	viewer, anchor := r.token(t, "u1", auth.RoleViewer, 1), r.token(t, "anchor-b", auth.RoleAnchor, 1)
	expectError(t, r.call(t, "POST", "/api/rooms", viewer, `{"title":"mine"}`), 403, errs.Forbidden)
	var rm struct {
		ID        string `json:"id"`
		StreamKey string `json:"stream_key"`
		Online    *int   `json:"online"`
	}
	if st := decodeBody(t, r.call(t, "POST", "/api/rooms", anchor, `{"title":"B","id":"b"}`), &rm); st != 201 || rm.ID != "b" || rm.StreamKey == "" {
		t.Fatalf("create: %d %+v", st, rm)
	}
	if st := decodeBody(t, r.call(t, "POST", "/api/rooms", anchor, `{"title":"again"}`), &rm); st != 200 || rm.ID != "b" {
		t.Fatalf("second create: %d %+v", st, rm)
	}
	// Only the anchor (or an admin) sees the stream key.
	rm.StreamKey = ""
	if decodeBody(t, r.call(t, "GET", "/api/rooms/b", viewer, ""), &rm); rm.StreamKey != "" || rm.Online == nil {
		t.Fatalf("a viewer's view: %+v", rm)
	}
	if decodeBody(t, r.call(t, "GET", "/api/rooms/b", anchor, ""), &rm); rm.StreamKey == "" {
		t.Fatal("the anchor does not see the key")
	}
	expectError(t, r.call(t, "POST", "/api/rooms/a/key/reset", anchor, ""), 403, errs.Forbidden)
	if st := decodeBody(t, r.call(t, "POST", "/api/rooms/b/key/reset", anchor, ""), &rm); st != 200 || rm.StreamKey != "rk_new_b" {
		t.Fatalf("reset: %d %+v", st, rm)
	}
	var list struct {
		Rooms []json.RawMessage `json:"rooms"`
	}
	if decodeBody(t, r.call(t, "GET", "/api/rooms", "", ""), &list); len(list.Rooms) != 2 {
		t.Fatalf("list: %s", list.Rooms)
	}
	expectError(t, r.call(t, "GET", "/api/rooms/zz", "", ""), 404, errs.RoomNotFound)
}

func TestModerationRoutes(t *testing.T) {
	r := newRig(t, nil)
	anchor, other := r.token(t, "anchor-a", auth.RoleAnchor, 1), r.token(t, "u2", auth.RoleViewer, 1)
	if st := decodeBody(t, r.call(t, "POST", "/api/rooms/a/kick", anchor, `{"user":"u9","duration_s":60}`), nil); st != 200 {
		t.Fatalf("kick: %d", st)
	}
	expectError(t, r.call(t, "POST", "/api/rooms/a/mute", other, `{"user":"u9"}`), 403, errs.Forbidden)
	expectError(t, r.call(t, "POST", "/api/rooms/a/mute", anchor, `{"user":"u9","duration_s":-1}`), 400, errs.BadRequest)
	if st := decodeBody(t, r.call(t, "DELETE", "/api/rooms/a/mute/u9", anchor, ""), nil); st != 200 {
		t.Fatalf("unmute: %d", st)
	}
	var out struct {
		Ref string `json:"ref"`
	}
	if st := decodeBody(t, r.call(t, "DELETE", "/api/rooms/a/messages/m-7", anchor, ""), &out); st != 200 || out.Ref != "m-7" {
		t.Fatalf("retract: %d %+v", st, out)
	}
}

func TestAdminSettingsPersistAndAnnounce(t *testing.T) {
	r := newRig(t, nil)
	expectError(t, r.call(t, "PUT", "/api/admin/poll-intervals", "", `{"steps":[]}`), 401, errs.Unauthorized)
	expectError(t, r.call(t, "PUT", "/api/admin/poll-intervals", r.token(t, "u1", auth.RoleViewer, 1), `{"steps":[]}`), 401, errs.Unauthorized)
	var mu sync.Mutex
	var events []bus.Event
	unsub, err := r.bus.Subscribe(bus.Control, func(ev bus.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	body := `{"steps":[{"under":10,"ms":500},{"under":0,"ms":3000}]}`
	if st := decodeBody(t, r.call(t, "PUT", "/api/admin/poll-intervals", adminKey, body), nil); st != 200 {
		t.Fatalf("put: %d", st)
	}
	if v, _ := r.store.Setting(context.Background(), settingPoll); !strings.Contains(v, `"ms":500`) {
		t.Fatalf("stored %q", v)
	}
	mu.Lock()
	if len(events) != 1 || events[0].Type != bus.EvSettings {
		t.Fatalf("events %+v", events)
	}
	mu.Unlock()
	// Polls use the new table at once.
	var out struct {
		PollAfterMS int `json:"poll_after_ms"`
	}
	if decodeBody(t, r.call(t, "GET", "/api/rooms/a/messages", "", ""), &out); out.PollAfterMS != 500 {
		t.Fatalf("poll_after_ms %d after the change", out.PollAfterMS)
	}
	expectError(t, r.call(t, "PUT", "/api/admin/poll-intervals", adminKey, `{"steps":[{"under":0,"ms":-5}]}`), 400, errs.BadRequest)
	expectError(t, r.call(t, "PUT", "/api/admin/route", adminKey, `{"percent":101}`), 400, errs.BadRequest)
}

func TestHealthReadinessAndCORS(t *testing.T) {
	r := newRig(t, nil)
	if st := decodeBody(t, r.call(t, "GET", "/healthz", "", ""), nil); st != 200 {
		t.Fatalf("healthz %d", st)
	}
	if st := decodeBody(t, r.call(t, "GET", "/readyz", "", ""), nil); st != 200 {
		t.Fatalf("readyz %d", st)
	}
	r.gw.SetDraining()
	expectError(t, r.call(t, "GET", "/readyz", "", ""), 503, errs.Unavailable)
	resp := r.call(t, "OPTIONS", "/api/rooms/a/messages", "", "")
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestOriginPolicy(t *testing.T) {
	for _, c := range []struct {
		origins, origin, host string
		ok                    bool
	}{
		{"", "", "h:1", true},                     // not a browser
		{"", "http://h:1", "h:1", true},           // same host
		{"", "http://evil.example", "h:1", false}, // cross-site
		{"*", "http://evil.example", "h:1", true}, // any
		{"https://app.example, other.example", "https://app.example", "h:1", true},
		{"https://app.example, other.example", "http://other.example", "h:1", true},
		{"https://app.example", "http://app.example.evil", "h:1", false},
		{"", "::bad", "h:1", false},
	} {
		req := httptest.NewRequest("GET", "http://"+c.host+"/ws", nil)
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		if got := OriginPolicy(c.origins)(req); got != c.ok {
			t.Errorf("origins %q, Origin %q: %v, want %v", c.origins, c.origin, got, c.ok)
		}
	}
}

func TestNewNeedsItsDependencies(t *testing.T) {
	if _, err := New(context.Background(), Deps{}); err == nil {
		t.Fatal("New without dependencies succeeded")
	}
	if _, err := NewWSHandler(WSDeps{}); err == nil {
		t.Fatal("NewWSHandler without dependencies succeeded")
	}
}
