package gateway

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
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
