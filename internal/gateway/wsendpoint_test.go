package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/errs"
	"roomcast/internal/testutil"
)

// wsFrame is any server frame the tests read.
type wsFrame struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Seq   uint64 `json:"seq"`
	MsgID string `json:"msg_id"`
	User  string `json:"user"`
	Error struct {
		Code string `json:"code"`
	} `json:"error"`
}

func (r *rig) dial(t *testing.T, query string, h http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(r.srv.URL, "http")+"/ws?"+query, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", query, err, resp)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// exchange writes a frame and reads the next one.
func exchange(t *testing.T, c *websocket.Conn, frame string) wsFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f wsFrame
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return f
}

func TestWebSocketSendAndFrames(t *testing.T) {
	r := newRig(t, nil)
	c := r.dial(t, "room=a&token="+r.token(t, "u1", auth.RoleViewer, 4), nil)
	testutil.WaitFor(t, "the connection to attach", 10*time.Second, func() bool { return len(r.node.attached()) == 1 })
	fc := r.node.attached()[0]
	if fc.Room != "a" || fc.Member.UserID != "u1" || fc.Member.Name != "name-u1" || fc.Member.Level != 4 || !strings.HasPrefix(fc.Session, "w:") {
		t.Fatalf("attached %+v", fc)
	}
	if f := exchange(t, c, `{"type":"send","id":"c1","kind":"chat","text":"hi"}`); f.Type != "ack" || f.ID != "c1" || f.Seq != 1 || f.MsgID != "m-1" {
		t.Fatalf("ack %+v", f)
	}
	if s := r.svc.calls()[0]; s.room != "a" || s.id.Claims.Sub != "u1" || s.req.Text != "hi" || s.req.ID != "c1" {
		t.Fatalf("service saw %+v", s)
	}
	if f := exchange(t, c, `{"type":"ping"}`); f.Type != "pong" {
		t.Fatalf("pong %+v", f)
	}
	if f := exchange(t, c, `{"type":"shout","id":"c2"}`); f.Type != "error" || f.ID != "c2" || f.Error.Code != errs.BadRequest {
		t.Fatalf("unknown frame %+v", f)
	}
	if f := exchange(t, c, `{not json`); f.Type != "error" || f.Error.Code != errs.BadJSON {
		t.Fatalf("bad frame %+v", f)
	}
	r.svc.set(func(f *fakeService) { f.err = errs.New(errs.Muted, "muted") })
	if f := exchange(t, c, `{"type":"send","id":"c3","kind":"chat","text":"hi"}`); f.Type != "error" || f.ID != "c3" || f.Error.Code != errs.Muted {
		t.Fatalf("refused send %+v", f)
	}
	c.Close(websocket.StatusNormalClosure, "")
	testutil.WaitFor(t, "the connection to detach", 10*time.Second, func() bool {
		r.node.mu.Lock()
		defer r.node.mu.Unlock()
		return r.node.detached == 1
	})
}

// TestWebSocketAuthFrame: on a private server a connection without a token
// is attached only after its auth frame, and cannot send before.
func TestWebSocketAuthFrame(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.PublicRead = false })
	c := r.dial(t, "room=a", nil)
	if f := exchange(t, c, `{"type":"send","id":"s1","kind":"chat","text":"hi"}`); f.Type != "error" || f.Error.Code != errs.Unauthorized {
		t.Fatalf("send before auth %+v", f)
	}
	if n := len(r.node.attached()); n != 0 {
		t.Fatalf("%d attached before auth", n)
	}
	if f := exchange(t, c, `{"type":"auth","id":"a0","token":"bad"}`); f.Type != "error" || f.Error.Code != errs.BadToken {
		t.Fatalf("bad auth %+v", f)
	}
	if f := exchange(t, c, `{"type":"auth","id":"a1","token":"`+r.token(t, "u5", auth.RoleViewer, 1)+`"}`); f.Type != "auth_ok" || f.ID != "a1" || f.User != "u5" {
		t.Fatalf("auth %+v", f)
	}
	if a := r.node.attached(); len(a) != 1 || a[0].Member.UserID != "u5" {
		t.Fatalf("attached after auth: %+v", a)
	}
	if f := exchange(t, c, `{"type":"send","id":"s2","kind":"chat","text":"hi"}`); f.Type != "ack" {
		t.Fatalf("send after auth %+v", f)
	}
}

// TestWebSocketIdentifyLater: on a public server an anonymous viewer is
// attached at once and its auth frame identifies it to the node.
func TestWebSocketIdentifyLater(t *testing.T) {
	r := newRig(t, nil)
	c := r.dial(t, "room=a", nil)
	testutil.WaitFor(t, "the anonymous viewer to attach", 10*time.Second, func() bool { return len(r.node.attached()) == 1 })
	if f := exchange(t, c, `{"type":"auth","id":"a1","token":"`+r.token(t, "u6", auth.RoleViewer, 1)+`"}`); f.Type != "auth_ok" {
		t.Fatalf("auth %+v", f)
	}
	r.node.mu.Lock()
	defer r.node.mu.Unlock()
	if len(r.node.idents) != 1 || r.node.idents[0].UserID != "u6" || len(r.node.conns) != 1 {
		t.Fatalf("identified %+v, attached %d", r.node.idents, len(r.node.conns))
	}
}

func TestWebSocketHandshakeRefusals(t *testing.T) {
	r := newRig(t, nil)
	r.svc.set(func(f *fakeService) { f.kicked["bad"] = true })
	for _, c := range []struct {
		query  string
		origin string
		status int
		code   string
	}{
		{"", "", 400, errs.BadRequest},
		{"room=zz", "", 404, errs.RoomNotFound},
		{"room=a&cursor=x", "", 400, errs.BadRequest},
		{"room=a&token=nope", "", 401, errs.BadToken},
		{"room=a&token=" + r.token(t, "bad", auth.RoleViewer, 1), "", 403, errs.Kicked},
		{"room=a", "http://evil.example", 403, errs.BadOrigin},
	} {
		req, _ := http.NewRequest("GET", r.srv.URL+"/ws?"+c.query, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		expectError(t, resp, c.status, c.code)
	}
	if n := len(r.node.attached()); n != 0 {
		t.Fatalf("%d refused connections attached", n)
	}
}
