package fanout

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/testutil"
	"roomcast/internal/wire"
	"roomcast/internal/ws"
	pb "roomcast/proto/roomcast/v1"
)

// encSink speaks one encoding, as a WebSocket connection does: it takes
// the payload's frame in that encoding.
type encSink struct {
	enc Encoding
	mu  sync.Mutex
	got []*Payload
	fr  []*ws.Prepared
}

func (s *encSink) Send(p *Payload) error {
	f := p.Frame(s.enc)
	s.mu.Lock()
	s.got, s.fr = append(s.got, p), append(s.fr, f)
	s.mu.Unlock()
	return nil
}
func (s *encSink) Close(int, string) {}

func (s *encSink) last() (*Payload, *ws.Prepared, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		return nil, nil, 0
	}
	return s.got[len(s.got)-1], s.fr[len(s.fr)-1], len(s.got)
}

// TestPayloadEncodedOncePerEncoding: a batch is encoded (and framed) once
// per encoding in use, every connection of an encoding gets the same bytes,
// an encoding nobody speaks is never built, and the protobuf batch carries
// the JSON batch's messages.
func TestPayloadEncodedOncePerEncoding(t *testing.T) {
	r := newRig(t, Config{Tick: 10 * time.Millisecond})
	ctx := context.Background()
	var mixed, jsonOnly []*encSink
	attach := func(room string, enc Encoding) *encSink {
		s := &encSink{enc: enc}
		id := fmt.Sprint(room, len(mixed)+len(jsonOnly))
		if err := r.node.Attach(ctx, &Conn{Sink: s, Room: room, Session: id, Member: presence.Member{Session: id}}, 0, true); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, e := range []Encoding{JSON, Proto, JSON, Proto, JSON} {
		mixed = append(mixed, attach("mixed", e))
	}
	for range 3 {
		jsonOnly = append(jsonOnly, attach("plain", JSON))
	}
	for range 3 {
		r.append(t, "mixed", message.KindChat, 100)
		r.append(t, "plain", message.KindChat, 100)
	}
	// Each sink gets: first batch, online, likes, then the live batch.
	testutil.WaitFor(t, "the live batches", 10*time.Second, func() bool {
		for _, s := range append(append([]*encSink{}, mixed...), jsonOnly...) {
			if _, _, n := s.last(); n < 4 {
				return false
			}
		}
		return true
	})
	frames := map[Encoding]*ws.Prepared{}
	var live *Payload
	for i, s := range mixed {
		p, f, _ := s.last()
		if live == nil {
			live = p
		} else if p != live {
			t.Fatalf("sink %d got another payload", i)
		}
		if frames[s.enc] == nil {
			frames[s.enc] = f
		} else if frames[s.enc] != f {
			t.Fatalf("sink %d (encoding %d) got its own frame", i, s.enc)
		}
	}
	if frames[JSON] == frames[Proto] {
		t.Fatal("one frame for two encodings")
	}
	// The protobuf batch says what the JSON batch says.
	var f pb.Frame
	if ok, err := wire.NewDecoder(live.Bytes(Proto), 0).Next(&f); !ok || err != nil {
		t.Fatal(ok, err)
	}
	var b pb.Batch
	if err := proto.Unmarshal(f.Body, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 3 || b.Room != "mixed" || uint64(b.Cursor) != live.content.Cursor || b.Messages[2].Seq != int64(live.content.Cursor) {
		t.Fatalf("protobuf batch %v for %s", &b, live.Bytes(JSON))
	}
	// A room with JSON viewers only never encodes protobuf.
	p, _, _ := jsonOnly[0].last()
	if p.enc[JSON].data == nil || p.enc[Proto].data != nil {
		t.Fatal("the JSON-only room's batch was encoded in protobuf")
	}
}

// BenchmarkEncodeBatch is the once-per-tick cost of a room's batch of 20
// chats in each encoding (messages already sealed, as the timeline does).
func BenchmarkEncodeBatch(b *testing.B) {
	msgs := make([]*message.Message, 20)
	for i := range msgs {
		msgs[i] = &message.Message{Seq: uint64(1000 + i), ID: fmt.Sprintf("db494b24-%d", i), Room: "show",
			Kind: message.KindChat, Scope: message.ScopeRoom, User: &message.User{ID: "u1", Name: "Alice", Level: 10 + i},
			Text: "welcome to the show!", Priority: 130, TS: 1795244270846}
		msgs[i].Seal()
	}
	for _, enc := range []Encoding{JSON, Proto} {
		b.Run([]string{"json", "proto"}[enc], func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n = newBatch("show", msgs, 1019, "5be0c2d41f9a7e63", false).Frame(enc).Len()
			}
			b.ReportMetric(float64(n), "wire-bytes/batch")
		})
	}
}
