package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"roomcast/internal/auth"
)

// keptConn is one client socket whose requests are written by hand, so a
// test knows every request went over the same connection.
type keptConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (k *keptConn) do(method, path, tok, body string) (int, string) {
	k.t.Helper()
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: roomcast\r\nUser-Agent: test\r\n", method, path)
	if tok != "" {
		req += "Authorization: Bearer " + tok + "\r\n"
	}
	if body != "" {
		req += fmt.Sprintf("Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	if _, err := io.WriteString(k.c, req+"\r\n"+body); err != nil {
		k.t.Fatal(err)
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		k.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		k.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// One keep-alive connection polls (answered off net/http after the
// first), sends, gets a bad-cursor error, reads a room and finally upgrades
// to WebSocket: every answer is the one net/http gives, in order.
func TestKeepAlivePollConnection(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("ka")
	nc, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	k := &keptConn{t: t, c: nc, r: bufio.NewReader(nc)}
	tok := s.token("kept", auth.RoleViewer, 1)

	var cursor uint64
	poll := func() pollAnswer {
		t.Helper()
		code, body := k.do("GET", fmt.Sprintf("/api/rooms/ka/messages?cursor=%d&limit=15", cursor), "", "")
		var a pollAnswer
		if err := json.Unmarshal([]byte(body), &a); code != 200 || err != nil {
			t.Fatalf("poll: %d %s (%v)", code, body, err)
		}
		cursor = a.Cursor
		return a
	}
	for range 5 {
		poll()
	}
	for i := range 3 {
		if code, body := k.do("POST", "/api/rooms/ka/messages", tok, fmt.Sprintf(`{"kind":"chat","text":"kept %d"}`, i)); code != 201 {
			t.Fatalf("send: %d %s", code, body)
		}
		a := poll()
		if len(a.Messages) != 1 || a.Messages[0].Text != fmt.Sprintf("kept %d", i) {
			t.Fatalf("poll after send %d: %+v", i, a.Messages)
		}
	}
	if code, body := k.do("GET", "/api/rooms/ka/messages?cursor=x", "", ""); code != 400 || !strings.Contains(body, `"code":"bad_request"`) {
		t.Fatalf("bad cursor: %d %s", code, body)
	}
	if code, _ := k.do("GET", "/api/rooms/nope/messages?cursor=1", "", ""); code != 404 {
		t.Fatalf("missing room: %d", code)
	}
	if code, body := k.do("GET", "/api/rooms/ka", "", ""); code != 200 || !strings.Contains(body, `"id":"ka"`) {
		t.Fatalf("room: %d %s", code, body)
	}
	poll()
	st := s.app.keep.Stats()
	// Nine polls, the first and each after a send written by Take; the
	// sends and the bad cursor handed back (the rest were net/http's: a
	// connection returns to the keep-alive path at its next good poll).
	if st.Answers != 9 || st.Takes != 5 || st.HandBacks != 4 {
		t.Errorf("keep-alive stats %+v; want 9 answers, 5 takes, 4 hand-backs", st)
	}

	// The same socket upgrades: the WebSocket path gets the raw socket back.
	fmt.Fprintf(nc, "GET /ws?room=ka&cursor=0 HTTP/1.1\r\nHost: roomcast\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	// The first frame is the room's first batch.
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(k.r, hdr); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != 0x81 {
		t.Fatalf("first frame header %x, want a final text frame", hdr)
	}
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(k.r, l[:])
		n = int(l[0])<<8 | int(l[1])
	case 127:
		t.Fatal("first frame over 64 KiB")
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(k.r, payload); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(payload), `"type":"batch","room":"ka"`) {
		t.Fatalf("first frame %s, want the room's batch", payload)
	}
}
