package app

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"roomcast/internal/config"
	"roomcast/internal/testutil"
	pb "roomcast/proto/roomcast/v1"
)

// TestProtoNegotiation: /ws speaks protobuf when the client selects the
// roomcast.v1.proto subprotocol or asks ?format=proto, JSON otherwise.
func TestProtoNegotiation(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("neg")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, bySub := range []bool{true, false} {
		c, resp, err := s.dialProto(ctx, "room=neg", bySub)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if bySub {
			want = "roomcast.v1.proto"
		}
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != want {
			t.Fatalf("subprotocol %q, want %q", got, want)
		}
		f, err := c.read(ctx) // the first frame of a connection is its first batch
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != 2 || f.Kind != pb.Kind_NOTIFY {
			t.Fatalf("first frame %v", f)
		}
		if b := body(t, f, &pb.Batch{}); b.Room != "neg" || len(b.Messages) != 0 {
			t.Fatalf("first batch %v", b)
		}
		c.close()
	}
	// JSON: by subprotocol, and by default (no subprotocol, no format).
	for _, opts := range []*websocket.DialOptions{{Subprotocols: []string{"roomcast.v1.json"}}, nil} {
		c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws?room=neg", opts)
		if err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.MessageText || !strings.HasPrefix(string(data), `{"type":"batch","room":"neg"`) {
			t.Fatalf("%v %q (subprotocol %q)", typ, data, resp.Header.Get("Sec-WebSocket-Protocol"))
		}
		c.CloseNow()
	}
	var out map[string]map[string]string
	if code := s.do("GET", "/ws?room=neg&format=xml", "", nil, &out); code != 400 || out["error"]["code"] != "bad_request" {
		t.Fatalf("format=xml: %d %v", code, out)
	}
}

// TestProtoAuthSendHeartbeat covers auth (good and bad), send → RESPONSE
// with the same seq, heartbeat with the online count, and several frames in
// one WebSocket message.
func TestProtoAuthSendHeartbeat(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("pa")
	viewer := s.token("v1", "viewer", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := s.dialProto(ctx, "room=pa", true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()

	// A bad token: code 100, and the connection is still a guest.
	r := c.call(ctx, &pb.Frame{Type: 0, Token: "not-a-token"}, nil)
	if r.Code != 100 || r.ErrorCode != "bad_token" || r.Error == "" || r.UserId != "" {
		t.Fatalf("bad auth: %v", r)
	}
	r = c.call(ctx, &pb.Frame{Type: 1}, &pb.SendRequest{Kind: "chat", Text: "as a guest"})
	if r.Code != 103 || r.ErrorCode != "unauthorized" {
		t.Fatalf("send after a bad auth: %v", r)
	}
	// A good token.
	r = c.call(ctx, &pb.Frame{Type: 0, Token: viewer}, nil)
	if r.Code != 0 || r.UserId != "v1" {
		t.Fatalf("auth: %v", r)
	}
	// Send: the RESPONSE echoes the seq and carries the ack; the message
	// then arrives in a batch.
	r = c.call(ctx, &pb.Frame{Type: 1}, &pb.SendRequest{Kind: "chat", Text: "hello in protobuf"})
	ack := body(t, r, &pb.SendAck{})
	if r.Code != 0 || ack.Seq <= 0 || ack.Id == "" {
		t.Fatalf("send: %v %v", r, ack)
	}
	for {
		b, err := c.batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Messages) > 0 && b.Messages[len(b.Messages)-1].Seq >= ack.Seq {
			m := b.Messages[len(b.Messages)-1]
			if m.Seq != ack.Seq || m.Id != ack.Id || m.Text != "hello in protobuf" || m.User.GetId() != "v1" ||
				m.Kind != "chat" || m.Scope != "room" || m.Room != "pa" || b.Cursor < ack.Seq {
				t.Fatalf("own message %v in %v", m, b)
			}
			break
		}
	}
	// A repeat with the same client_msg_id gets the first send's ack (issue 8).
	first := body(t, c.call(ctx, &pb.Frame{Type: 1}, &pb.SendRequest{Kind: "chat", Text: "once", ClientMsgId: "p-1"}), &pb.SendAck{})
	again := body(t, c.call(ctx, &pb.Frame{Type: 1}, &pb.SendRequest{Kind: "chat", Text: "once", ClientMsgId: "p-1"}), &pb.SendAck{})
	if first.Seq <= ack.Seq || again.Seq != first.Seq || again.Id != first.Id {
		t.Fatalf("client_msg_id repeat: %v then %v", first, again)
	}
	// A like's ack carries the total; a refused send carries its code.
	r = c.call(ctx, &pb.Frame{Type: 1}, &pb.SendRequest{Kind: "like"})
	if a := body(t, r, &pb.SendAck{}); r.Code != 0 || a.Likes != 1 || a.Seq != 0 {
		t.Fatalf("like: %v %v", r, a)
	}
	r = c.call(ctx, &pb.Frame{Type: 1}, &pb.SendRequest{Kind: "gift", GiftId: "yacht", Count: 1})
	if r.Code != 124 || r.ErrorCode != "unknown_gift" {
		t.Fatalf("unknown gift: %v", r)
	}
	// Heartbeat: the online count (this connection is online).
	testutil.WaitFor(t, "heartbeat reporting this connection online", 20*time.Second, func() bool {
		r := c.call(ctx, &pb.Frame{Type: -1}, nil)
		return r.Code == 0 && body(t, r, &pb.Heartbeat{}).Online >= 1
	})
	// Several frames in one message: answered in order, each with its seq.
	gift, _ := proto.Marshal(&pb.SendRequest{Kind: "gift", GiftId: "heart", Count: 2})
	chat, _ := proto.Marshal(&pb.SendRequest{Kind: "chat", Text: "second of three"})
	frames := []*pb.Frame{{Type: -1}, {Type: 1, Body: chat}, {Type: 1, Body: gift}}
	if err := c.request(ctx, frames...); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, f := range frames {
		r, err := c.response(ctx, f.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != 0 || r.Type != f.Type {
			t.Fatalf("frame %v answered %v", f, r)
		}
		if f.Type == 1 {
			seqs = append(seqs, body(t, r, &pb.SendAck{}).Seq)
		}
	}
	if seqs[1] != seqs[0]+1 {
		t.Fatalf("sends of one message sequenced %v", seqs)
	}
}

// cmpMsg is a message as both encodings carry it, for comparing them.
type cmpMsg struct {
	Seq      int64           `json:"seq"`
	ID       string          `json:"id"`
	Room     string          `json:"room"`
	Kind     string          `json:"kind"`
	Scope    string          `json:"scope"`
	Text     string          `json:"text"`
	Priority float64         `json:"priority"`
	TS       int64           `json:"ts"`
	Data     json.RawMessage `json:"data"`
	VideoMS  *int64          `json:"video_ms"`
	User     *struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Level int32  `json:"level"`
	} `json:"user"`
	Gift *struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		ValueCents int64  `json:"value_cents"`
		Count      int32  `json:"count"`
	} `json:"gift"`
}

// cmpBatch is a room batch as both encodings carry it.
type cmpBatch struct {
	Cursor   int64
	Epoch    string
	Reset    bool
	Messages []cmpMsg
}

func fromProto(b *pb.Batch) cmpBatch {
	out := cmpBatch{Cursor: b.Cursor, Epoch: b.Epoch, Reset: b.Reset_, Messages: []cmpMsg{}}
	for _, m := range b.Messages {
		c := cmpMsg{Seq: m.Seq, ID: m.Id, Room: m.Room, Kind: m.Kind, Scope: m.Scope, Text: m.Text,
			Priority: m.Priority, TS: m.Ts, Data: m.Data, VideoMS: m.VideoMs}
		if len(c.Data) == 0 {
			c.Data = nil
		}
		if m.User != nil {
			c.User = &struct {
				ID    string `json:"id"`
				Name  string `json:"name"`
				Level int32  `json:"level"`
			}{m.User.Id, m.User.Name, m.User.Level}
		}
		if m.Gift != nil {
			c.Gift = &struct {
				ID         string `json:"id"`
				Name       string `json:"name"`
				ValueCents int64  `json:"value_cents"`
				Count      int32  `json:"count"`
			}{m.Gift.Id, m.Gift.Name, m.Gift.ValueCents, m.Gift.Count}
		}
		out.Messages = append(out.Messages, c)
	}
	return out
}

// TestProtoBatchesMatchJSON: a JSON and a protobuf viewer side by side see
// the same batches (boundaries, budget selection, order, content), with and
// without a render budget; without one, every message, gap-free.
func TestProtoBatchesMatchJSON(t *testing.T) {
	for _, budget := range []int{0, 20} {
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
			s := startServer(t, func(c *config.Config) { c.RenderBudget = budget })
			s.createRoom("side")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			jc, _, err := s.dial(ctx, "room=side")
			if err != nil {
				t.Fatal(err)
			}
			defer jc.close()
			pc, _, err := s.dialProto(ctx, "room=side", true)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.close()
			// Markers both have seen. A viewer is attached only after its
			// handshake answer, so the first marker may reach one of them in
			// its first batch and the other in a live batch; once both have
			// seen it, both are attached, and from the second marker on they
			// share every batch.
			anchor := s.token("anchor-side", "anchor", 50)
			var mark sendAnswer
			for range 2 {
				_, mark = s.send("side", anchor, map[string]string{"kind": "chat", "text": "marker"})
				for _, next := range []func() (int64, error){
					func() (int64, error) { f, err := jc.next(ctx, "batch"); return int64(f.Cursor), err },
					func() (int64, error) { b, err := pc.batch(ctx); return b.GetCursor(), err },
				} {
					for {
						cur, err := next()
						if err != nil {
							t.Fatal(err)
						}
						if cur >= int64(mark.Seq) {
							break
						}
					}
				}
			}
			// Bursts: chats from several users, gifts, a system message; after
			// each burst both viewers read up to it, so there are several
			// batches to compare.
			var last uint64
			var jb, pb_ []cmpBatch
			for i := range 60 {
				tok := s.token(fmt.Sprintf("u%d", i%7), "viewer", i%50)
				body := map[string]any{"kind": "chat", "text": fmt.Sprintf("chat %d", i)}
				switch {
				case i%15 == 7:
					body = map[string]any{"kind": "gift", "gift": map[string]any{"id": "heart", "count": 1 + i%3}}
				case i == 40:
					tok, body = testAdminKey, map[string]any{"kind": "system", "text": "must deliver"}
				}
				if i == 50 { // a function message with its data: a kick
					var out map[string]any
					if code := s.do("POST", "/api/rooms/side/kick", testAdminKey, map[string]any{"user": "u99"}, &out); code != 200 {
						t.Fatalf("kick: %d %v", code, out)
					}
				}
				code, a := s.send("side", tok, body)
				if code != 201 && code != 200 {
					t.Fatalf("send %d: %d %+v", i, code, a.Error)
				}
				last = a.Seq
				if i%15 != 14 {
					continue
				}
				for len(jb) == 0 || jb[len(jb)-1].Cursor < int64(last) {
					f, err := jc.rawBatch(ctx)
					if err != nil {
						t.Fatal(err)
					}
					jb = append(jb, f)
				}
				for len(pb_) == 0 || pb_[len(pb_)-1].Cursor < int64(last) {
					b, err := pc.batch(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if b.Online != nil || b.Likes != nil {
						continue // a count update (the JSON online/likes frames)
					}
					pb_ = append(pb_, fromProto(b))
				}
			}
			if !reflect.DeepEqual(jb, pb_) {
				t.Fatalf("JSON batches\n%+v\nprotobuf batches\n%+v", jb, pb_)
			}
			prev, n := int64(mark.Seq), 0
			for _, b := range pb_ {
				for _, m := range b.Messages {
					if m.Seq <= prev || (budget == 0 && m.Seq != prev+1) {
						t.Fatalf("seq %d after %d (budget %d)", m.Seq, prev, budget)
					}
					prev = m.Seq
					n++
				}
			}
			if budget == 0 && prev != int64(last) {
				t.Fatalf("last seq %d, want %d", prev, last)
			}
			kicks := 0
			for _, b := range pb_ {
				for _, m := range b.Messages {
					if m.Kind == "kick" && strings.Contains(string(m.Data), `"u99"`) {
						kicks++
					}
				}
			}
			if kicks != 1 {
				t.Fatalf("%d kick messages with their data, want 1", kicks)
			}
			if budget > 0 && n >= 60 {
				t.Fatalf("budget %d dropped nothing of 60 messages", budget)
			}
			t.Logf("%d batches, %d messages delivered to both", len(pb_), n)
		})
	}
}

// rawBatch reads until the next JSON batch, keeping every field.
func (c *wsClient) rawBatch(ctx context.Context) (cmpBatch, error) {
	for {
		_, data, err := c.conn.Read(ctx)
		if err != nil {
			return cmpBatch{}, err
		}
		var f struct {
			Type string `json:"type"`
			cmpBatch
		}
		if err := json.Unmarshal(data, &f); err != nil {
			return cmpBatch{}, err
		}
		if f.Type == "batch" {
			if f.Messages == nil {
				f.Messages = []cmpMsg{}
			}
			return f.cmpBatch, nil
		}
	}
}

// TestProtoZombie: a protobuf connection that goes silent (answers no ping,
// sends no heartbeat) is closed with 4000 after the --heartbeat timeout,
// like a JSON one.
func TestProtoZombie(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Heartbeat = 500 * time.Millisecond })
	s.createRoom("z")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A zombie answers no ping. It still reads, so it sees the close frame;
	// a client that stopped reading instead would try to answer the pings
	// queued before the close once it read again, and fail writing the pong
	// to a socket the server has closed (seen under load).
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws?room=z&format=proto", &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { return false },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	c := &protoClient{t: t, conn: conn}
	testutil.WaitFor(t, "the silent connection to be dropped", 30*time.Second, func() bool {
		return s.app.ws.Stats().ClosedHeartbeat >= 1
	})
	for {
		if _, err := c.read(ctx); err != nil {
			if websocket.CloseStatus(err) != 4000 {
				t.Fatalf("closed with %v, want 4000", err)
			}
			return
		}
	}
}

// TestProtoBadInput: each bad frame is answered with an error RESPONSE (or,
// for a message over --max-frame, a close with 1009) and the connection's
// other traffic goes on.
func TestProtoBadInput(t *testing.T) {
	s := startServer(t, nil)
	s.createRoom("bad")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := s.dialProto(ctx, "room=bad&token="+s.token("b1", "viewer", 3), true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	chat := func(text string) *pb.Frame {
		b, _ := proto.Marshal(&pb.SendRequest{Kind: "chat", Text: text})
		return &pb.Frame{Type: 1, Body: b}
	}
	good := func(text string) []byte { // one numbered send frame, encoded
		f := chat(text)
		c.seq++
		f.Seq = c.seq
		return encodeFrames(f)
	}
	expectAck := func() int64 {
		t.Helper()
		r, err := c.response(ctx, c.seq)
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != 0 {
			t.Fatalf("send after bad input: %v", r)
		}
		return body(t, r, &pb.SendAck{}).Seq
	}
	expectErr := func(seq uint32, code int32, errCode string) {
		t.Helper()
		r, err := c.response(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != pb.Kind_RESPONSE || r.Code != code || r.ErrorCode != errCode || r.Error == "" {
			t.Fatalf("got %v, want code %d (%s)", r, code, errCode)
		}
	}
	var lastSeq int64
	for _, tc := range []struct {
		name    string
		bad     []byte
		seq     uint32 // the seq the error echoes
		code    int32
		errCode string
		then    bool // a good frame after the bad one in the same message is still served
	}{
		{"truncated varint", []byte{0x80}, 0, 112, "bad_frame", false},
		{"length past message", []byte{0x20, 0x08, 0x01}, 0, 112, "bad_frame", false},
		{"frame over the size limit", protowire.AppendVarint(nil, 1<<20), 0, 113, "too_large", false},
		{"frame does not parse", []byte{0x03, 0x18, 0x63, 0xff}, 99, 112, "bad_frame", true},
		{"unknown type", encodeFrames(&pb.Frame{Type: 77, Seq: 98}), 98, 110, "bad_request", true},
		{"body does not parse", encodeFrames(&pb.Frame{Type: 1, Seq: 97, Body: []byte{0x0a, 0x7f}}), 97, 112, "bad_frame", true},
		{"a NOTIFY from the client", encodeFrames(&pb.Frame{Type: 2, Kind: pb.Kind_NOTIFY, Seq: 96}), 96, 110, "bad_request", true},
		{"data that is not JSON", encodeFrames(&pb.Frame{Type: 1, Seq: 95, Body: mustMarshal(&pb.SendRequest{Kind: "chat", Text: "x", Data: []byte("{nope")})}), 95, 111, "bad_json", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := good("before " + tc.name)
			msg := append(append([]byte{}, before...), tc.bad...)
			if tc.then {
				msg = append(msg, good("after "+tc.name)...)
			}
			if err := c.writeRaw(ctx, msg); err != nil {
				t.Fatal(err)
			}
			// The frame before the bad one is served, then the error, then
			// (when the length was sound) the frame after it.
			r, err := c.read(ctx)
			for err == nil && r.Kind != pb.Kind_RESPONSE {
				r, err = c.read(ctx)
			}
			if err != nil || r.Code != 0 {
				t.Fatalf("frame before the bad one: %v %v", r, err)
			}
			expectErr(tc.seq, tc.code, tc.errCode)
			if tc.then {
				lastSeq = expectAck()
			}
			// The connection is still good for the next message.
			if err := c.writeRaw(ctx, good("next after "+tc.name)); err != nil {
				t.Fatal(err)
			}
			lastSeq = expectAck()
		})
	}
	// Batches still flow: the last message arrives.
	for {
		b, err := c.batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b.Cursor >= lastSeq {
			break
		}
	}
	// More than 64 frames in one message: the first 64 are served, the rest
	// refused with one error.
	many := make([]*pb.Frame, 70)
	for i := range many {
		many[i] = &pb.Frame{Type: -1}
	}
	if err := c.request(ctx, many...); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 64; i++ {
		if r, err := c.response(ctx, many[i].Seq); err != nil || r.Code != 0 {
			t.Fatalf("heartbeat %d of 70: %v %v", i, r, err)
		}
	}
	expectErr(0, 110, "bad_request")
	if err := c.writeRaw(ctx, good("after too many")); err != nil {
		t.Fatal(err)
	}
	expectAck()
	// A message over --max-frame (16 KiB) closes with 1009.
	big := make([]byte, 17<<10)
	if err := c.writeRaw(ctx, big); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := c.read(ctx); err != nil {
			if websocket.CloseStatus(err) != 1009 {
				t.Fatalf("closed with %v, want 1009", err)
			}
			return
		}
	}
}

// TestProtoPrivateRead: with --public-read=false a protobuf connection
// without a token receives nothing until a good auth frame; then its first
// batch arrives, then the auth RESPONSE.
func TestProtoPrivateRead(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.PublicRead = false })
	s.createRoom("priv")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := s.dialProto(ctx, "room=priv", true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := c.request(ctx, &pb.Frame{Type: 0, Token: "nope"}); err != nil {
		t.Fatal(err)
	}
	// The very first frame is the refusal: no batch was sent before auth.
	if r, err := c.read(ctx); err != nil || r.Kind != pb.Kind_RESPONSE || r.Code != 100 {
		t.Fatalf("bad token: %v %v", r, err)
	}
	if err := c.request(ctx, &pb.Frame{Type: 0, Token: s.token("p1", "viewer", 1)}); err != nil {
		t.Fatal(err)
	}
	f, err := c.read(ctx)
	if err != nil || f.Type != 2 || f.Kind != pb.Kind_NOTIFY || body(t, f, &pb.Batch{}).Room != "priv" {
		t.Fatalf("first frame after auth: %v %v", f, err)
	}
	if r, err := c.response(ctx, c.seq); err != nil || r.Code != 0 || r.UserId != "p1" {
		t.Fatalf("auth: %v %v", r, err)
	}
}
