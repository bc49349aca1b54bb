package gateway

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"roomcast/internal/auth"
	"roomcast/internal/errs"
	"roomcast/internal/wire"
	pb "roomcast/proto/roomcast/v1"
)

// sameAsJSON checks that whatever the fast decoder takes, encoding/json
// decodes to the same fields.
func sameAsJSON(t *testing.T, in string) bool {
	t.Helper()
	var f fastFrame
	if !f.parse([]byte(in)) {
		return false
	}
	var want clientFrame
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatalf("%q: fast decoder took what encoding/json refuses: %v", in, err)
	}
	eqInt := func(p *int, has bool, v int) bool { return (p == nil) == !has && (p == nil || *p == v) }
	if f.typ != want.Type || f.id != want.ID || f.activity != want.Activity ||
		!eqInt(want.N, f.hasN, f.n) || !eqInt(want.Option, f.hasOption, f.option) || !eqInt(want.Rain, f.hasRain, f.rain) {
		t.Fatalf("%q: fast %+v, encoding/json %+v", in, f, want)
	}
	return true
}

func TestFastFrameTakesTheClientsFrames(t *testing.T) {
	for _, in := range []string{
		`{"type":"answer","id":"q1","n":1,"option":0}`,
		`{"type":"answer","id":"q3","n":3,"option":2,"activity":"qa1b2"}`,
		`{"type":"grab","activity":"qaafe93dd2dc10dff","rain":0}`,
		`{"type":"grab","id":"g9","activity":"x","rain":19}`,
		" { \"type\" : \"answer\" ,\n\"n\":-0,\t\"option\":123456789 } \r\n",
		`{"type":"answer","n":1,"n":2,"option":3}`, // the last duplicate wins, as in encoding/json
		`{"type":"answer","id":"","n":1}`,          // missing option: the handler answers invalid
		`{"type":"grab","id":"日本語","activity":"é","rain":-1}`,
	} {
		if !sameAsJSON(t, in) {
			t.Errorf("%q: not taken by the fast decoder", in)
		}
	}
}

func TestFastFrameLeavesTheRestToEncodingJSON(t *testing.T) {
	for _, in := range []string{
		``, `{}`, `[]`, `null`, `{"type":"ping"}`, `{"type":"send","text":"hi"}`,
		`{"Type":"answer","n":1,"option":1}`,              // case-insensitive keys: encoding/json's rule
		`{"type":"answer","n":1.0,"option":1}`,            // not an int
		`{"type":"answer","n":1e2,"option":1}`,            // not an int
		`{"type":"answer","n":01,"option":1}`,             // invalid JSON
		`{"type":"answer","n":1234567890,"option":1}`,     // more than 9 digits
		`{"type":"answer","n":null,"option":1}`,           // null
		`{"type":"answer","id":"a\"b","n":1,"option":1}`,  // an escape
		`{"type":"answer","id":"a` + "\x01" + `","n":1}`,  // a control character
		`{"type":"answer","n":1,"option":1,"extra":true}`, // an unknown key
		`{"type":"answer","n":1,"option":1}x`,             // trailing bytes
		`{"type":"answer","n":1,"option":1,}`,             // trailing comma
		`{"type":"answer","n":1 "option":1}`,              // missing comma
		`{"type":"answer","n":"1","option":1}`,            // a string for an int
		`{"type":1,"n":1,"option":1}`,                     // an int for a string
		`{"type":"answer","n":-,"option":1}`,              // a lone minus
		`{"type":"answer","n":1,"option":1`,               // unterminated
		`{"type":"answer","id":"unterminated`,             // unterminated string
		`{"id":"x","n":1,"option":1}`,                     // no type
	} {
		if sameAsJSON(t, in) {
			t.Errorf("%q: taken by the fast decoder", in)
		}
	}
}

// TestFastFrameAgreesWithEncodingJSON mutates valid frames byte by byte:
// whatever the fast decoder still takes must decode the same in
// encoding/json.
func TestFastFrameAgreesWithEncodingJSON(t *testing.T) {
	seeds := []string{
		`{"type":"answer","id":"q1","n":1,"option":0}`,
		`{"type":"grab","id":"g","activity":"qa","rain":3}`,
	}
	alphabet := []byte(` "{}:,-0123456789.eEnulrtyabgidxq\\` + "\t\n")
	rng := rand.New(rand.NewPCG(1, 2))
	taken := 0
	for range 50000 {
		b := []byte(seeds[rng.IntN(len(seeds))])
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				b[i] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				b = append(b[:i], b[i+1:]...)
			default:
				b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
			}
			if len(b) == 0 {
				break
			}
		}
		if sameAsJSON(t, string(b)) {
			taken++
		}
	}
	if taken == 0 {
		t.Fatal("no mutated frame was taken: the test checks nothing")
	}
}

func BenchmarkFrameDecode(b *testing.B) {
	in := []byte(`{"type":"grab","activity":"qaafe93dd2dc10dff","rain":0}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var f fastFrame
			if !f.parse(in) {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var f clientFrame
			if err := json.Unmarshal(in, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestWebSocketGrabThrottledInline: while the node's bucket is empty a
// valid grab is answered "throttled" (on the poller goroutine), and the
// rest is answered as before: an invalid grab by its error, an anonymous
// one by unauthorized, and with tokens again the grab reaches the quiz,
// admitted.
func TestWebSocketGrabThrottledInline(t *testing.T) {
	r := newRig(t, nil)
	c := r.dial(t, "room=a&token="+r.token(t, "u1", auth.RoleViewer, 1), nil)
	r.quiz.throttled.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var grabOn func(c *websocket.Conn, frame string) map[string]any
	grab := func(frame string) map[string]any {
		t.Helper()
		return grabOn(c, frame)
	}
	grabOn = func(c *websocket.Conn, frame string) map[string]any {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			if m["type"] != "batch" {
				return m
			}
		}
	}
	if m := grab(`{"type":"grab","id":"g1","activity":"qa","rain":2}`); m["type"] != "grab_ok" || m["id"] != "g1" ||
		m["activity"] != "qa" || m["rain"] != 2.0 || m["amount_cents"] != 0.0 || m["reason"] != "throttled" {
		t.Fatalf("throttled grab: %v", m)
	}
	if m := grab(`{"type":"grab","id":"g2","activity":"qa","rain":20}`); m["type"] != "error" {
		t.Fatalf("rain 20: %v", m)
	}
	r.quiz.throttled.Store(false)
	// Admitted on the poller, the grab reaches the quiz as admitted (no
	// second token). On a new connection: c's handler goroutine, which
	// answered g2, may not have gone idle yet when g3 arrives, and a
	// message goes to the poller only when none of its connection's is
	// with the handler (it would then take its tokens in the quiz).
	c2 := r.dial(t, "room=a&token="+r.token(t, "u1", auth.RoleViewer, 1), nil)
	if m := grabOn(c2, `{"type":"grab","id":"g3","activity":"qa","rain":0}`); m["type"] != "error" || m["id"] != "g3" ||
		m["error"].(map[string]any)["message"] != "no such activity (admitted)" {
		t.Fatalf("unthrottled grab reaches the (empty) quiz admitted: %v", m)
	}
	r.quiz.throttled.Store(true)
	anon := r.dial(t, "room=a", nil)
	if f := exchange(t, anon, `{"type":"grab","id":"g4","activity":"qa","rain":0}`); f.Type != "error" || f.Error.Code != errs.Unauthorized {
		t.Fatalf("anonymous grab: %+v", f)
	}
}

// TestWebSocketProtoGrabThrottledInline: the protobuf grab is refused the
// same way, with the GrabAck onProtoGrab would send.
func TestWebSocketProtoGrabThrottledInline(t *testing.T) {
	r := newRig(t, nil)
	c := r.dial(t, "room=a&format=proto&token="+r.token(t, "u1", auth.RoleViewer, 1), nil)
	r.quiz.throttled.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := proto.Marshal(&pb.GrabRequest{Activity: "qa", Rain: 1})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := wire.AppendFrame(nil, &pb.Frame{Kind: wire.Request, Type: wire.TypeGrab, Seq: 7, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		t.Fatal(err)
	}
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d := wire.NewDecoder(data, 0)
		var f pb.Frame
		for {
			ok, err := d.Next(&f)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if f.Kind != wire.Response || f.Seq != 7 {
				continue
			}
			var ack pb.GrabAck
			if f.Type != wire.TypeGrab || f.Code != 0 || proto.Unmarshal(f.Body, &ack) != nil ||
				ack.Activity != "qa" || ack.Rain != 1 || ack.AmountCents != 0 || ack.Reason != "throttled" {
				t.Fatalf("answer %v, ack %v", &f, &ack)
			}
			return
		}
	}
}
