package ws

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomcast/internal/testutil"
)

func TestAcceptKey(t *testing.T) {
	// RFC 6455 §1.3 example.
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("acceptKey = %q", got)
	}
}

func TestHandshakeGood(t *testing.T) {
	h := newRecHandler(true)
	ts := newTestServer(t, Config{}, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, resp, err := websocket.Dial(ctx, ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c := ts.nextConn(t)
	if c.Compressed() {
		t.Fatal("compression negotiated while disabled")
	}
	if c.RemoteAddr() == nil || ts.Len() != 1 || ts.Stats().Accepted != 1 {
		t.Fatalf("remote=%v len=%d stats=%+v", c.RemoteAddr(), ts.Len(), ts.Stats())
	}
}

// TestHandshakeSubprotocol: the first subprotocol the client offers that
// the server speaks is selected and echoed; none when there is no match.
func TestHandshakeSubprotocol(t *testing.T) {
	ts := newTestServer(t, Config{}, newRecHandler(false))
	for _, tt := range []struct {
		offer []string
		want  string
	}{
		{nil, ""},
		{[]string{"x.v9"}, ""},
		{[]string{"x.v9", "b.v1", "a.v1"}, "b.v1"},
		{[]string{"a.v1"}, "a.v1"},
		{[]string{"A.V1"}, ""}, // tokens are case-sensitive
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cc, resp, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{Subprotocols: tt.offer})
		cancel()
		if err != nil {
			t.Fatalf("offer %v: %v", tt.offer, err)
		}
		c := ts.nextConn(t)
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.want || c.Subprotocol() != tt.want || cc.Subprotocol() != tt.want {
			t.Errorf("offer %v: header %q, server %q, client %q; want %q", tt.offer, got, c.Subprotocol(), cc.Subprotocol(), tt.want)
		}
		cc.CloseNow()
	}
}

func TestHandshakeBad(t *testing.T) {
	ts := newTestServer(t, Config{CheckOrigin: func(r *http.Request) bool {
		return r.Header.Get("Origin") == "" || r.Header.Get("Origin") == "https://good.example"
	}}, newRecHandler(false))
	good := func() http.Header {
		h := http.Header{}
		h.Set("Connection", "keep-alive, Upgrade")
		h.Set("Upgrade", "websocket")
		h.Set("Sec-WebSocket-Version", "13")
		h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return h
	}
	tests := []struct {
		name   string
		method string
		edit   func(http.Header)
		status int
		code   string
	}{
		{"post", http.MethodPost, nil, 400, "bad_handshake"},
		{"no connection upgrade", "", func(h http.Header) { h.Set("Connection", "keep-alive") }, 400, "bad_handshake"},
		{"no upgrade header", "", func(h http.Header) { h.Del("Upgrade") }, 400, "bad_handshake"},
		{"wrong version", "", func(h http.Header) { h.Set("Sec-WebSocket-Version", "8") }, 400, "bad_handshake"},
		{"missing key", "", func(h http.Header) { h.Del("Sec-WebSocket-Key") }, 400, "bad_handshake"},
		{"short key", "", func(h http.Header) { h.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, 400, "bad_handshake"},
		{"bad origin", "", func(h http.Header) { h.Set("Origin", "https://evil.example") }, 403, "bad_origin"},
		{"good origin", "", func(h http.Header) { h.Set("Origin", "https://good.example") }, 101, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, ts.hs.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = good()
			if tt.edit != nil {
				tt.edit(req.Header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 101 {
				if resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
					t.Fatalf("accept %q", resp.Header.Get("Sec-WebSocket-Accept"))
				}
				return
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			b, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(b, &body); err != nil || body.Error.Code != tt.code || body.Error.Message == "" {
				t.Fatalf("body %s (err %v)", b, err)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content-type %q", ct)
			}
			if tt.name == "wrong version" && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Fatal("missing Sec-WebSocket-Version: 13 on version mismatch")
			}
		})
	}
	// The good-origin upgrade went through; close it via the server.
	c := ts.nextConn(t)
	c.Close(CloseNormal, "")
	testutil.WaitFor(t, "conn closed", 10*time.Second, func() bool { return ts.Len() == 0 })
}

func TestUpgradeReturnsHandshakeError(t *testing.T) {
	s, err := NewServer(Config{Logger: quietLogger}, newRecHandler(false))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := &recorder{header: http.Header{}}
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	_, err = s.Upgrade(rec, r)
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 400 || he.Code != "bad_handshake" || rec.status != 400 {
		t.Fatalf("err=%v status=%d", err, rec.status)
	}
}

type recorder struct {
	header http.Header
	status int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

func TestNegotiateDeflate(t *testing.T) {
	tests := []struct {
		offer string
		ok    bool
	}{
		{"permessage-deflate", true},
		{"permessage-deflate; client_max_window_bits", true},
		{"permessage-deflate; client_max_window_bits=10; server_no_context_takeover", true},
		{"permessage-deflate; server_max_window_bits=10", false},
		{"permessage-deflate; server_max_window_bits=10, permessage-deflate", true},
		{"permessage-deflate; server_max_window_bits=15", true},
		{"permessage-deflate; meow", false},
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", false},
		{"x-webkit-deflate-frame", false},
		{"", false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.offer != "" {
			h.Set("Sec-WebSocket-Extensions", tt.offer)
		}
		if got := negotiateDeflate(h); got != tt.ok {
			t.Errorf("%q: got %v, want %v", tt.offer, got, tt.ok)
		}
	}
}

func TestUpgradeAfterShutdown(t *testing.T) {
	ts := newTestServer(t, Config{}, newRecHandler(false))
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, ts.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("err=%v resp=%v", err, resp)
	}
}
