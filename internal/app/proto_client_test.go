package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	pb "roomcast/proto/roomcast/v1"
)

// protoClient is a WebSocket client of the protobuf encoding built only from
// the schema's generated types and the standard length-delimited framing
// (protodelim): it shares no code with the server's decoder.
type protoClient struct {
	t     testing.TB
	conn  *websocket.Conn
	seq   uint32
	queue []*pb.Frame // decoded, not yet consumed
}

// dialProto connects with the roomcast.v1.proto subprotocol, or with
// ?format=proto when bySubprotocol is false.
func (s *server) dialProto(ctx context.Context, query string, bySubprotocol bool) (*protoClient, *http.Response, error) {
	var opts *websocket.DialOptions
	if bySubprotocol {
		opts = &websocket.DialOptions{Subprotocols: []string{"roomcast.v1.proto"}}
	} else {
		query += "&format=proto"
	}
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws?"+query, opts)
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(16 << 20)
	return &protoClient{t: s.t, conn: c}, resp, nil
}

// encode returns frames as one message: each prefixed by its varint length.
func encodeFrames(frames ...*pb.Frame) []byte {
	var buf bytes.Buffer
	for _, f := range frames {
		if _, err := protodelim.MarshalTo(&buf, f); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

// writeRaw sends b as one binary message.
func (c *protoClient) writeRaw(ctx context.Context, b []byte) error {
	return c.conn.Write(ctx, websocket.MessageBinary, b)
}

// request numbers frames (next seqs) and sends them in one message.
func (c *protoClient) request(ctx context.Context, frames ...*pb.Frame) error {
	for _, f := range frames {
		c.seq++
		f.Seq = c.seq
	}
	return c.writeRaw(ctx, encodeFrames(frames...))
}

// read returns the next frame, reading (and decoding) a message if needed.
func (c *protoClient) read(ctx context.Context) (*pb.Frame, error) {
	for len(c.queue) == 0 {
		typ, data, err := c.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageBinary {
			return nil, fmt.Errorf("a %v message on a protobuf connection: %q", typ, data)
		}
		r := bytes.NewReader(data)
		for {
			f := &pb.Frame{}
			if err := protodelim.UnmarshalFrom(r, f); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("decode %x: %w", data, err)
			}
			c.queue = append(c.queue, f)
		}
	}
	f := c.queue[0]
	c.queue = c.queue[1:]
	return f, nil
}

// response reads until the RESPONSE to seq, skipping notifications.
func (c *protoClient) response(ctx context.Context, seq uint32) (*pb.Frame, error) {
	for {
		f, err := c.read(ctx)
		if err != nil {
			return nil, err
		}
		if f.Kind == pb.Kind_RESPONSE {
			if f.Seq != seq {
				return nil, fmt.Errorf("response to seq %d while waiting for %d: %v", f.Seq, seq, f)
			}
			return f, nil
		}
	}
}

// call sends one REQUEST and waits for its RESPONSE.
func (c *protoClient) call(ctx context.Context, f *pb.Frame, body proto.Message) *pb.Frame {
	c.t.Helper()
	if body != nil {
		b, err := proto.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		f.Body = b
	}
	if err := c.request(ctx, f); err != nil {
		c.t.Fatal(err)
	}
	r, err := c.response(ctx, f.Seq)
	if err != nil {
		c.t.Fatal(err)
	}
	if r.Type != f.Type {
		c.t.Fatalf("response type %d to a type %d request", r.Type, f.Type)
	}
	return r
}

// batch reads until the next type 2 NOTIFY and returns its body.
func (c *protoClient) batch(ctx context.Context) (*pb.Batch, error) {
	for {
		f, err := c.read(ctx)
		if err != nil {
			return nil, err
		}
		if f.Kind == pb.Kind_NOTIFY && f.Type == 2 {
			var b pb.Batch
			if err := proto.Unmarshal(f.Body, &b); err != nil {
				return nil, err
			}
			return &b, nil
		}
	}
}

func (c *protoClient) close() { c.conn.Close(websocket.StatusNormalClosure, "") }

func body[T proto.Message](t testing.TB, f *pb.Frame, into T) T {
	t.Helper()
	if err := proto.Unmarshal(f.Body, into); err != nil {
		t.Fatalf("body of %v: %v", f, err)
	}
	return into
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}
