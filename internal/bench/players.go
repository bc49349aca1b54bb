package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"roomcast/internal/auth"
	pb "roomcast/proto/roomcast/v1"
)

// activityPlayers is what bench quiz and bench rain share: N players of
// the bench's room over WebSocket (JSON or protobuf), the operator (an
// admin token and its HTTP client) and the notes (errors, reasons) counted
// by label. Each scenario embeds it and keeps only what its activity adds.
type activityPlayers struct {
	common
	noDrain
	players, perS int
	format        string

	admin string // a minted admin token: the operator
	toks  []string
	conns []*playerConn
	wg    sync.WaitGroup // client goroutines
	http  *http.Client

	connected atomic.Int64
	attached  atomic.Int64
	errMu     sync.Mutex
	errs      map[string]uint64
}

func (p *activityPlayers) base() *common { return &p.common }

// playerFlags registers --players, --rate and --format.
func (p *activityPlayers) playerFlags(fs *flag.FlagSet) {
	fs.IntVar(&p.players, "players", 1000, "players (WebSocket connections)")
	fs.IntVar(&p.perS, "rate", 2000, "connections opened per second (0 = all at once)")
	fs.StringVar(&p.format, "format", "json", "json or proto (the players' WebSocket encoding)")
}

// formatOK reports whether --format is json or proto.
func (p *activityPlayers) formatOK() bool { return p.format == "json" || p.format == "proto" }

// errFormat is scenario what's error for a bad --format.
func errFormat(what string) error {
	return errors.New(what + `: --format must be "json" or "proto"`)
}

// setupPlayers mints the operator and the players' tokens, creates the
// room and makes one playerConn per player.
func (p *activityPlayers) setupPlayers(r *runner, what, tokPrefix string) error {
	p.errs = map[string]uint64{}
	p.http = &http.Client{Timeout: p.timeout}
	var err error
	if p.admin, err = operatorSetup(&p.common, p.http, what); err != nil {
		return err
	}
	if p.toks, err = r.tokens(tokPrefix, p.players); err != nil {
		return err
	}
	p.conns = make([]*playerConn, p.players)
	for i := range p.conns {
		p.conns[i] = &playerConn{}
	}
	return nil
}

// rampPlayers runs player i (run, owned by wg) at --rate, waits until
// every player is attached and returns how many are.
func (p *activityPlayers) rampPlayers(r *runner, run func(ctx context.Context, i int)) int {
	r.rampUp(p.players, p.perS, func(i int) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			run(r.runCtx, i)
		}()
	}, func() {
		r.waitUntil(time.Now().Add(60*time.Second), 50*time.Millisecond, func() bool { return p.attached.Load() >= int64(p.players) })
	})
	return int(p.attached.Load())
}

func (p *activityPlayers) noteErr(code string) {
	p.errMu.Lock()
	p.errs[code]++
	p.errMu.Unlock()
}

// call is one operator request.
func (p *activityPlayers) call(method, path string, body any) (int, []byte, error) {
	return opCall(p.http, p.url, method, path, p.admin, body)
}

func (p *activityPlayers) stop(r *runner) {
	r.cancel()
	for _, c := range p.conns {
		c.close()
	}
	p.wg.Wait()
}

// playerConn is one player's WebSocket, which stop closes even mid-dial.
type playerConn struct {
	mu   sync.Mutex
	conn net.Conn
	done bool
}

func (c *playerConn) close() {
	c.mu.Lock()
	c.done = true
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()
}

// connect dials player i; ok is false when the dial failed (noted) or the
// bench is already stopping.
func (p *activityPlayers) connect(ctx context.Context, i int) (conn net.Conn, rw io.ReadWriter, ok bool) {
	conn, rw, err := dialPlayer(ctx, &p.common, p.toks[i], p.format)
	if err != nil {
		p.noteErr("dial: " + dialLabel(err))
		return nil, nil, false
	}
	c := p.conns[i]
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		conn.Close()
		return nil, nil, false
	}
	c.conn = conn
	c.mu.Unlock()
	p.connected.Add(1)
	return conn, rw, true
}

// read hands each server message to on until the connection closes; the
// first one marks the player attached.
func (p *activityPlayers) read(rw io.ReadWriter, on func(data []byte)) {
	attached := false
	for {
		data, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			return
		}
		if !attached {
			attached = true
			p.attached.Add(1)
		}
		on(data)
	}
}

// request is a player's request in the players' format: jsonText, or m in
// a length-prefixed protobuf frame of type typ.
func (p *activityPlayers) request(typ int32, seq *uint32, m proto.Message, jsonText string) ([]byte, ws.OpCode) {
	if p.format != "proto" {
		return []byte(jsonText), ws.OpText
	}
	*seq++
	body, _ := proto.Marshal(m)
	fb, _ := proto.Marshal(&pb.Frame{Type: typ, Seq: *seq, Body: body})
	return append(protowire.AppendVarint(nil, uint64(len(fb))), fb...), ws.OpBinary
}

// eachFrame calls on for each length-prefixed protobuf frame in data,
// stopping at the first malformed one or when on returns false.
func eachFrame(data []byte, on func(f *pb.Frame) bool) {
	for len(data) > 0 {
		n, k := protowire.ConsumeVarint(data)
		if k < 0 || n > uint64(len(data)-k) {
			return
		}
		var f pb.Frame
		if proto.Unmarshal(data[k:k+int(n)], &f) != nil {
			return
		}
		data = data[k+int(n):]
		if !on(&f) {
			return
		}
	}
}

// jsonErrorCode is the code of a JSON error frame.
func jsonErrorCode(data []byte) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(data, &e)
	return e.Error.Code
}

// isJSONType reports whether data is a JSON frame of type typ.
func isJSONType(data []byte, typ string) bool {
	return bytes.HasPrefix(data, []byte(`{"type":"`+typ+`"`))
}

// operatorSetup mints an admin token (--secret) and creates the bench's
// room; it returns the token, the operator of quizzes and rains.
func operatorSetup(c *common, hc *http.Client, what string) (string, error) {
	signer, err := auth.NewSigner(c.secret)
	if err != nil {
		return "", fmt.Errorf("%s: --secret: %w", what, err)
	}
	admin, err := signer.Sign(auth.Claims{Sub: "bench-quiz-admin", Name: "bench", Role: auth.RoleAdmin, Level: 100}, time.Hour)
	if err != nil {
		return "", err
	}
	anchor, err := signer.Sign(auth.Claims{Sub: "bench-quiz-anchor-" + c.room, Name: "bench", Role: auth.RoleAnchor, Level: 50}, time.Hour)
	if err != nil {
		return "", err
	}
	if code, body, err := opCall(hc, c.url, "POST", "/api/rooms", anchor, map[string]string{"id": c.room, "title": what}); err != nil {
		return "", err
	} else if code != 201 && code != 409 && code != 200 {
		return "", fmt.Errorf("%s: create room: %d %s", what, code, body)
	}
	return admin, nil
}

// opCall is one JSON request with a token.
func opCall(hc *http.Client, base, method, path, tok string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("bench: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, nil
}

// dialPlayer opens a player's WebSocket to the bench's room (format json
// or proto) and returns it with a buffered reader-writer over it.
func dialPlayer(ctx context.Context, c *common, tok, format string) (net.Conn, io.ReadWriter, error) {
	u := "ws" + c.url[len("http"):] + "/ws?room=" + c.room + "&token=" + tok
	d := ws.Dialer{Timeout: c.timeout}
	if format == "proto" {
		d.Protocols = []string{subprotocolProto}
	}
	conn, br, _, err := d.Dial(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	var rd io.Reader = conn
	if br != nil {
		rd = io.MultiReader(br, conn)
	}
	return conn, struct {
		io.Reader
		io.Writer
	}{bufio.NewReaderSize(rd, 4096), conn}, nil
}
