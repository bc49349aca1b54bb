package ws

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// HandshakeError is returned by Upgrade when the request was refused; the
// HTTP error response has already been written.
type HandshakeError struct {
	Status  int
	Code    string // "bad_handshake", "bad_origin", "unavailable"
	Message string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("ws: handshake refused (%d %s): %s", e.Status, e.Code, e.Message)
}

const (
	codeBadHandshake = "bad_handshake"
	codeBadOrigin    = "bad_origin"
	codeUnavailable  = "unavailable"
)

// handshakeWriteTimeout bounds writing the 101 response.
const handshakeWriteTimeout = 10 * time.Second

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Upgrade performs the server side of the RFC 6455 opening handshake and
// returns the new connection, registered but not yet reading: attach state
// with SetValue, then call Start. Send may be used before Start.
//
// On a refused handshake it writes a JSON error, {"error":{"code":...,
// "message":...}}, with status 400 (bad_handshake), 403 (bad_origin) or 503
// (unavailable, during shutdown), and returns a *HandshakeError. The
// hijacked bufio buffers are dropped; bytes the client sent after its
// request are kept and parsed on Start.
//
// subprotocols are the application protocols the server speaks: the first
// one the client offers (Sec-WebSocket-Protocol, in the client's order of
// preference) is selected, echoed in the response and reported by
// Conn.Subprotocol; when the client offers none of them, none is selected.
func (s *Server) Upgrade(w http.ResponseWriter, r *http.Request, subprotocols ...string) (*Conn, error) {
	key, err := checkHandshake(r)
	if err != nil {
		if errors.Is(err, errBadVersion) {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		return nil, refuse(w, http.StatusBadRequest, codeBadHandshake, err.Error())
	}
	if s.cfg.CheckOrigin != nil && !s.cfg.CheckOrigin(r) {
		return nil, refuse(w, http.StatusForbidden, codeBadOrigin, "origin not allowed")
	}
	if r.TLS != nil {
		// The poller needs the raw socket; terminate TLS in front of us.
		return nil, refuse(w, http.StatusBadRequest, codeBadHandshake, "TLS connections are not supported; terminate TLS at a proxy")
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, refuse(w, http.StatusServiceUnavailable, codeUnavailable, "server shutting down")
	}
	compress := s.cfg.Compression && negotiateDeflate(r.Header)

	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("ws: upgrade: hijack: %w", err)
	}
	var initial []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n) // cannot fail for n ≤ Buffered
		initial = bytes.Clone(b)
	}
	// brw is dropped here: no bufio buffers stay with the connection.

	c, err := s.finishUpgrade(nc, key, compress, selectSubprotocol(r.Header, subprotocols), initial)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

func (s *Server) finishUpgrade(nc net.Conn, key string, compress bool, subprotocol string, initial []byte) (*Conn, error) {
	// A *net.TCPConn, or a connection net/http got back from the keep-alive
	// poll path (keepalive.replayConn), which keeps the socket's methods.
	if tc, ok := nc.(interface{ SetWriteBuffer(int) error }); ok && s.cfg.SendBuffer > 0 {
		if err := tc.SetWriteBuffer(s.cfg.SendBuffer); err != nil {
			return nil, fmt.Errorf("ws: upgrade: SO_SNDBUF: %w", err)
		}
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("ws: upgrade: %T has no raw socket", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("ws: upgrade: syscall conn: %w", err)
	}

	resp := make([]byte, 0, 256)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = append(resp, acceptKey(key)...)
	if compress {
		resp = append(resp, "\r\nSec-WebSocket-Extensions: "...)
		resp = append(resp, deflateResponse...)
	}
	if subprotocol != "" {
		resp = append(resp, "\r\nSec-WebSocket-Protocol: "...)
		resp = append(resp, subprotocol...)
	}
	resp = append(resp, "\r\n\r\n"...)
	// A blocking write through the runtime poller with a deadline: the
	// response is small and goes out at once on any live connection.
	if err := nc.SetWriteDeadline(time.Now().Add(handshakeWriteTimeout)); err != nil {
		return nil, fmt.Errorf("ws: upgrade: set deadline: %w", err)
	}
	if _, err := nc.Write(resp); err != nil {
		return nil, fmt.Errorf("ws: upgrade: write response: %w", err)
	}
	// Raw reads and writes check deadlines too: clear it.
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("ws: upgrade: clear deadline: %w", err)
	}

	// Out of the runtime's poller: it would wake for every packet and
	// every write of a socket only pollLoop reads (poller_linux.go).
	drc, dfd, err := detach(nc, rc)
	if err != nil {
		return nil, fmt.Errorf("ws: upgrade: %w", err)
	}
	c := newConn(s, nc, drc, dfd, compress, initial)
	c.subprotocol = subprotocol
	if err := s.register(c); err != nil {
		if cl, ok := drc.(interface{ Close() error }); ok {
			_ = cl.Close()
		}
		return nil, fmt.Errorf("ws: upgrade: %w", err)
	}
	return c, nil
}

var errBadVersion = errors.New("unsupported Sec-WebSocket-Version (want 13)")

// checkHandshake validates the client's opening handshake and returns its
// key.
func checkHandshake(r *http.Request) (string, error) {
	if r.Method != http.MethodGet {
		return "", errors.New("method must be GET")
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return "", errors.New(`"Connection" header must include "upgrade"`)
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return "", errors.New(`"Upgrade" header must include "websocket"`)
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", errBadVersion
	}
	key := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return "", errors.New("invalid Sec-WebSocket-Key")
	}
	return key, nil
}

// headerHasToken reports whether a comma-separated header contains token
// (case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// selectSubprotocol returns the first protocol the client offers that the
// server supports (exact match, as RFC 6455 tokens are case-sensitive), or "".
func selectSubprotocol(h http.Header, supported []string) string {
	if len(supported) == 0 {
		return ""
	}
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			for _, p := range supported {
				if t == p {
					return p
				}
			}
		}
	}
	return ""
}

func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// refuse writes the JSON error response and returns the matching error.
func refuse(w http.ResponseWriter, status int, code, msg string) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, msg
	b, _ := json.Marshal(body) // cannot fail for two strings
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return &HandshakeError{Status: status, Code: code, Message: msg}
}
