package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"roomcast/internal/errs"
	"roomcast/internal/message"
	pb "roomcast/proto/roomcast/v1"
)

func frames(t *testing.T, fs ...*pb.Frame) []byte {
	t.Helper()
	var b []byte
	for _, f := range fs {
		var err error
		if b, err = AppendFrame(b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestDecoderSeveralFrames(t *testing.T) {
	in := []*pb.Frame{
		{Type: TypeHeartbeat, Seq: 1},
		{Type: TypeAuth, Seq: 2, Token: "tok"},
		{Type: TypeSend, Seq: 3, Body: []byte{0x0a, 0x04, 'c', 'h', 'a', 't'}},
		{}, // an all-default frame is zero bytes long: still a frame
	}
	d := NewDecoder(frames(t, in...), 1024)
	var f pb.Frame
	for i, want := range in {
		ok, err := d.Next(&f)
		if !ok || err != nil {
			t.Fatalf("frame %d: ok=%v err=%v", i, ok, err)
		}
		if !proto.Equal(&f, want) {
			t.Fatalf("frame %d: got %v, want %v", i, &f, want)
		}
	}
	if ok, err := d.Next(&f); ok || err != nil {
		t.Fatalf("after the last frame: ok=%v err=%v", ok, err)
	}
}

func TestDecoderBadInput(t *testing.T) {
	good := frames(t, &pb.Frame{Type: TypeHeartbeat, Seq: 7})
	cases := []struct {
		name    string
		data    []byte
		max     int
		want    error
		goodOut int // good frames decoded before the error
	}{
		{"truncated varint", append(append([]byte{}, good...), 0x80), 0, ErrTruncatedLength, 1},
		{"length past message", append(append([]byte{}, good...), 0x05, 0x08, 0x01), 0, ErrLengthPastMessage, 1},
		{"over the limit", protowire.AppendVarint(nil, 1<<20), 1024, ErrFrameTooBig, 0},
		{"huge length", protowire.AppendVarint(nil, 1<<62), 0, ErrLengthPastMessage, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(c.data, c.max)
			var f pb.Frame
			n := 0
			for {
				ok, err := d.Next(&f)
				if err != nil {
					if !errors.Is(err, c.want) || ok || Recoverable(err) {
						t.Fatalf("got ok=%v err=%v, want %v (fatal)", ok, err, c.want)
					}
					break
				}
				if !ok {
					t.Fatalf("no error, want %v", c.want)
				}
				n++
			}
			if n != c.goodOut {
				t.Fatalf("%d good frames before the error, want %d", n, c.goodOut)
			}
			if ok, err := d.Next(&f); ok || err != nil {
				t.Fatalf("after a fatal error: ok=%v err=%v", ok, err)
			}
		})
	}
}

func TestDecoderUnparsableFrameIsSkipped(t *testing.T) {
	bad := []byte{0x02, 0x0f, 0xff} // field 1 with wire type 7: not protobuf
	data := append(append(frames(t, &pb.Frame{Seq: 1}), bad...), frames(t, &pb.Frame{Seq: 2})...)
	d := NewDecoder(data, 0)
	var f pb.Frame
	var seqs []uint32
	var errsSeen int
	for {
		ok, err := d.Next(&f)
		if err != nil {
			if !Recoverable(err) || !ok {
				t.Fatalf("want a recoverable error, got ok=%v %v", ok, err)
			}
			errsSeen++
			continue
		}
		if !ok {
			break
		}
		seqs = append(seqs, f.Seq)
	}
	if errsSeen != 1 || len(seqs) != 2 || seqs[0] != 1 || seqs[1] != 2 {
		t.Fatalf("seqs %v, errors %d; want [1 2] and 1", seqs, errsSeen)
	}
}

// TestEveryErrorCodeHasANumber: docs/protocol.md promises a number for each
// JSON error code; two codes never share one.
func TestEveryErrorCodeHasANumber(t *testing.T) {
	seen := map[int32]string{}
	for _, c := range errs.Codes() {
		n, ok := codes[c]
		if !ok {
			t.Errorf("error code %q has no number", c)
			continue
		}
		if n < 100 || n == CodeFailure {
			t.Errorf("%q = %d: numbers are ≥ 100 and not 101", c, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%q and %q share %d", c, other, n)
		}
		seen[n] = c
	}
	if Code(errs.BadToken) != 100 || Code("some_new_code") != CodeFailure {
		t.Fatal("bad_token must be 100 and an unknown code 101")
	}
	e := ErrorFrame(TypeSend, 9, &errs.Error{Code: errs.RateLimited, Message: "slow down", RetryAfterMS: 1500})
	if e.Kind != Response || e.Seq != 9 || e.Type != TypeSend || e.Code != 131 || e.RetryAfterMs != 1500 || e.ErrorCode != errs.RateLimited {
		t.Fatalf("error frame %v", e)
	}
}

// TestMessageMatchesJSON: a message converted to protobuf carries the same
// fields as its JSON envelope.
func TestMessageMatchesJSON(t *testing.T) {
	m := &message.Message{Seq: 42, ID: "x-1", Room: "r", Kind: message.KindGift, Scope: message.ScopeRoom,
		User: &message.User{ID: "u1", Name: "Bo\xffb", Level: 7}, Text: "héllo <b>",
		Gift: &message.Gift{ID: "car", Name: "Sports car", ValueCents: 10000, Count: 2}, Priority: 832, TS: 1795244354099,
		To: "u9", Ref: "x-0", Data: json.RawMessage(`{"event":"live_start"}`), VideoMS: proto.Int64(0)}
	var j struct {
		Seq   int64  `json:"seq"`
		ID    string `json:"id"`
		Room  string `json:"room"`
		Kind  string `json:"kind"`
		Scope string `json:"scope"`
		To    string `json:"to"`
		User  struct {
			Id    string `json:"id"`
			Name  string `json:"name"`
			Level int32  `json:"level"`
		} `json:"user"`
		Text     string          `json:"text"`
		Gift     json.RawMessage `json:"gift"`
		Priority float64         `json:"priority"`
		TS       int64           `json:"ts"`
		Ref      string          `json:"ref"`
		Data     json.RawMessage `json:"data"`
		VideoMS  *int64          `json:"video_ms"`
	}
	if err := json.Unmarshal(m.AppendJSON(nil), &j); err != nil {
		t.Fatal(err)
	}
	p := Message(m)
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back pb.Message
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var gift struct {
		ID, Name   string
		ValueCents int64 `json:"value_cents"`
		Count      int32
	}
	_ = json.Unmarshal(j.Gift, &gift)
	if back.Seq != j.Seq || back.Id != j.ID || back.Room != j.Room || back.Kind != j.Kind || back.Scope != j.Scope ||
		back.To != j.To || back.Text != j.Text || back.Priority != j.Priority || back.Ts != j.TS || back.Ref != j.Ref ||
		!bytes.Equal(back.Data, j.Data) || back.User.Id != j.User.Id || back.User.Name != j.User.Name ||
		back.User.Level != j.User.Level || back.Gift.Id != gift.ID || back.Gift.Name != gift.Name ||
		back.Gift.ValueCents != gift.ValueCents || back.Gift.Count != gift.Count ||
		back.VideoMs == nil || j.VideoMS == nil || *back.VideoMs != *j.VideoMS {
		t.Fatalf("protobuf %v\ndiffers from JSON %+v", &back, j)
	}
}

func TestBatchFrame(t *testing.T) {
	msgs := []*message.Message{{Seq: 5, ID: "a", Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom, Text: "hi"}}
	b := AppendBatch(nil, BatchContent{Room: "r", Messages: msgs, Cursor: 6, Reset: true, Online: -1, Likes: 3, Move: "http://n2"})
	d := NewDecoder(b, 0)
	var f pb.Frame
	if ok, err := d.Next(&f); !ok || err != nil {
		t.Fatal(ok, err)
	}
	var batch pb.Batch
	if err := proto.Unmarshal(f.Body, &batch); err != nil {
		t.Fatal(err)
	}
	if f.Type != TypeBatch || f.Kind != Notify || batch.Cursor != 6 || !batch.Reset_ || batch.Online != nil ||
		batch.GetLikes() != 3 || len(batch.Messages) != 1 || batch.Messages[0].Text != "hi" || batch.Room != "r" || batch.Move != "http://n2" {
		t.Fatalf("frame %v batch %v", &f, &batch)
	}
}

// FuzzDecoder feeds arbitrary messages to the frame decoder: it never
// panics, always ends, and every frame it accepts re-encodes to a frame it
// accepts again.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x80})
	f.Add([]byte{0x05, 0x08})
	f.Add([]byte{0x02, 0x0f, 0xff})
	seed, _ := AppendFrame(nil, &pb.Frame{Type: TypeSend, Seq: 3, Token: "t", Body: []byte{0x0a, 0x01, 'x'}})
	seed, _ = AppendFrame(seed, &pb.Frame{Type: TypeHeartbeat, Seq: 4})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(data, 4096)
		var fr pb.Frame
		for i := 0; i <= len(data); i++ {
			ok, err := d.Next(&fr)
			if err != nil {
				if !ok {
					return
				}
				continue
			}
			if !ok {
				return
			}
			again, err := AppendFrame(nil, &fr)
			if err != nil {
				t.Fatalf("re-encode %v: %v", &fr, err)
			}
			var back pb.Frame
			if ok, err := NewDecoder(again, 0).Next(&back); !ok || err != nil || !proto.Equal(&back, &fr) {
				t.Fatalf("round trip of %v: %v %v %v", &fr, ok, err, &back)
			}
		}
		t.Fatal("decoder did not end")
	})
}

// TestAppendBatchMatchesGenerated: the hand-written batch encoder writes
// exactly what proto.Marshal writes for the generated types.
func TestAppendBatchMatchesGenerated(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	str := func(max int) string {
		b := make([]byte, rnd.IntN(max+1))
		for i := range b {
			b[i] = "ab\xffé<\"x"[rnd.IntN(8)]
		}
		return string(b)
	}
	msg := func() *message.Message {
		m := &message.Message{Seq: rnd.Uint64N(1 << 40), ID: str(12), Room: str(8), Kind: message.Kind(str(6)),
			Scope: message.Scope(str(5)), Text: str(300), Priority: rnd.IntN(2000) - 5, TS: rnd.Int64N(1 << 42),
			To: str(4), Ref: str(4)}
		if rnd.IntN(2) == 0 {
			m.User = &message.User{ID: str(5), Name: str(9), Level: rnd.IntN(200) - 10}
		}
		if rnd.IntN(3) == 0 {
			m.Gift = &message.Gift{ID: str(5), Name: str(9), ValueCents: rnd.Int64N(1e6), Count: rnd.IntN(100)}
		}
		if rnd.IntN(3) == 0 {
			m.VideoMS = proto.Int64(rnd.Int64N(3))
		}
		switch rnd.IntN(3) {
		case 0:
			m.Data = json.RawMessage(`{"user":"u7","until":1795244354099}`)
		case 1:
			m.Data = json.RawMessage(`{not json`)
		}
		return m
	}
	for i := range 300 {
		c := BatchContent{Room: str(6), Cursor: rnd.Uint64N(1 << 30), Reset: rnd.IntN(2) == 0, Online: -1, Likes: -1,
			Move: str(10), Epoch: str(6)}
		if i%5 == 0 {
			c.Online = rnd.Int64N(3)
		}
		if i%7 == 0 {
			c.Likes = rnd.Int64N(3)
		}
		for range rnd.IntN(5) + i/50*20 { // up to a 100-message batch (multi-byte lengths)
			c.Messages = append(c.Messages, msg())
		}
		body, err := proto.Marshal(BatchMessage(c))
		if err != nil {
			t.Fatal(err)
		}
		want := frames(t, &pb.Frame{Type: TypeBatch, Kind: Notify, Body: body})
		if got := AppendBatch([]byte("prefix"), c); !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
			t.Fatalf("batch %d: hand-written %x\ngenerated %x", i, got[6:], want)
		}
	}
}
