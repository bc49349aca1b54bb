package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"roomcast/internal/auth"
	"roomcast/internal/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

const (
	testSecret   = "test-secret-0123456789"
	testAdminKey = "test-admin-key"
)

// server is one roomcast node started for a test on a random port.
type server struct {
	t      *testing.T
	app    *App
	url    string
	signer *auth.Signer
	client *http.Client
}

func startServer(t *testing.T, mutate func(*config.Config)) *server {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP = "127.0.0.1:0"
	cfg.RTMP = ""
	cfg.Data = t.TempDir()
	cfg.Secret = testSecret
	cfg.AdminKey = testAdminKey
	cfg.RateLimit = "0"
	cfg.Heartbeat = 5 * time.Second
	if mutate != nil {
		mutate(cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()
	a, err := New(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, app: a, url: "http://" + a.HTTPAddr(), signer: a.Signer,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}}
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// token signs a token for a user.
func (s *server) token(sub, role string, level int) string {
	s.t.Helper()
	tok, err := s.signer.Sign(auth.Claims{Sub: sub, Name: "name-" + sub, Level: level, Role: role}, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// do sends a request and decodes a JSON answer into out (if non-nil).
func (s *server) do(method, path, tok string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// createRoom makes anchor's room with id.
func (s *server) createRoom(id string) (anchorTok string) {
	s.t.Helper()
	anchorTok = s.token("anchor-"+id, auth.RoleAnchor, 50)
	var out map[string]any
	if code := s.do("POST", "/api/rooms", anchorTok, map[string]string{"title": "room " + id, "id": id}, &out); code != 201 {
		s.t.Fatalf("create room: %d %v", code, out)
	}
	return anchorTok
}

type sendAnswer struct {
	Seq   uint64 `json:"seq"`
	ID    string `json:"id"`
	Epoch string `json:"epoch"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	RetryAfterMS int64  `json:"retry_after_ms"`
	VideoMS      *int64 `json:"video_ms"`
}

func (s *server) send(room, tok string, body any) (int, sendAnswer) {
	var a sendAnswer
	code := s.do("POST", "/api/rooms/"+room+"/messages", tok, body, &a)
	return code, a
}

type msg struct {
	Seq      uint64          `json:"seq"`
	ID       string          `json:"id"`
	Room     string          `json:"room"`
	Kind     string          `json:"kind"`
	Scope    string          `json:"scope"`
	To       string          `json:"to"`
	Text     string          `json:"text"`
	Priority int             `json:"priority"`
	Ref      string          `json:"ref"`
	Data     json.RawMessage `json:"data"`
	User     *struct {
		ID    string `json:"id"`
		Level int    `json:"level"`
	} `json:"user"`
	Gift *struct {
		ID string `json:"id"`
	} `json:"gift"`
}

type pollAnswer struct {
	Messages    []msg  `json:"messages"`
	Cursor      uint64 `json:"cursor"`
	Epoch       string `json:"epoch"`
	PollAfterMS int    `json:"poll_after_ms"`
	Reset       bool   `json:"reset"`
	Online      int    `json:"online"`
}

func (s *server) poll(room string, cursor *uint64, limit int) pollAnswer {
	s.t.Helper()
	path := fmt.Sprintf("/api/rooms/%s/messages?limit=%d", room, limit)
	if cursor != nil {
		path += fmt.Sprintf("&cursor=%d", *cursor)
	}
	var a pollAnswer
	if code := s.do("GET", path, "", nil, &a); code != 200 {
		s.t.Fatalf("poll: %d", code)
	}
	return a
}

// frame is any server → client WebSocket frame.
type frame struct {
	Type     string `json:"type"`
	Room     string `json:"room"`
	Messages []msg  `json:"messages"`
	Cursor   uint64 `json:"cursor"`
	Epoch    string `json:"epoch"`
	Reset    bool   `json:"reset"`
	Count    int    `json:"count"`
	Total    int64  `json:"total"`
	ID       string `json:"id"`
	MsgID    string `json:"msg_id"`
	Seq      uint64 `json:"seq"`
	Error    *struct {
		Code string `json:"code"`
	} `json:"error"`
}

// wsClient is a test WebSocket client.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
}

func (s *server) dial(ctx context.Context, query string) (*wsClient, *http.Response, error) {
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws?"+query, nil)
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(16 << 20)
	return &wsClient{t: s.t, conn: c}, resp, nil
}

// attached dials a WebSocket with query and waits for its first batch, so
// the connection is attached to its room's hub; it is closed after the test.
func (s *server) attached(ctx context.Context, query string) (*wsClient, frame) {
	s.t.Helper()
	w, _, err := s.dial(ctx, query)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(w.close)
	f, err := w.next(ctx, "batch")
	if err != nil {
		s.t.Fatal(err)
	}
	return w, f
}

func (c *wsClient) read(ctx context.Context) (frame, error) {
	_, data, err := c.conn.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		return frame{}, fmt.Errorf("bad frame %q: %w", data, err)
	}
	return f, nil
}

// next reads until a frame of type typ arrives.
func (c *wsClient) next(ctx context.Context, typ string) (frame, error) {
	for {
		f, err := c.read(ctx)
		if err != nil || f.Type == typ {
			return f, err
		}
	}
}

func (c *wsClient) write(ctx context.Context, v any) error {
	raw, _ := json.Marshal(v)
	return c.conn.Write(ctx, websocket.MessageText, raw)
}

func (c *wsClient) close() { c.conn.Close(websocket.StatusNormalClosure, "") }
