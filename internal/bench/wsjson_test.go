package bench

import (
	"fmt"
	"testing"

	"roomcast/internal/message"
)

// The JSON reader decodes what the server's encoder writes and agrees with
// the scanner on every field the checks use.
func TestDecodeJSONFrame(t *testing.T) {
	var got, want frameInfo
	var frames []string
	b := []byte(`{"type":"batch","room":"r","messages":[`)
	for i, text := range []string{"bench:123", "hello", "bench:9 pad", `\"}],"cursor":1,{`} {
		if i > 0 {
			b = append(b, ',')
		}
		m := &message.Message{Seq: uint64(i + 5), ID: "x", Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom,
			User: &message.User{ID: "u", Name: text, Level: 1}, Text: text, TS: 1}
		b = m.AppendJSON(b)
	}
	frames = append(frames, string(append(b, `],"cursor":8,"epoch":"e1","reset":true}`...)),
		`{"type":"ack","id":"b3.17","seq":5,"msg_id":"m"}`,
		`{"type":"error","id":"b1.2","error":{"code":"rate_limited","message":"slow"}}`,
		`{"type":"online","room":"r","count":3}`, `{"type":"likes","room":"r","total":9}`, `{"type":"pong"}`)
	for _, f := range frames {
		if err := decodeJSONFrame([]byte(f), &got); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := scanFrame([]byte(f), &want); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("%s:\n got %+v\nwant %+v", f, got, want)
		}
	}
	if got.typ != framePong {
		t.Errorf("last frame type %d", got.typ)
	}
	if err := decodeJSONFrame([]byte(frames[0]), &got); err != nil || len(got.msgs) != 4 || got.msgs[0] != (msgInfo{5, 123}) || got.cursor != 8 || !got.reset {
		t.Errorf("batch %+v %v", got, err)
	}
	// As the JS client, the reader takes retry_after_ms from the error object.
	if err := decodeJSONFrame([]byte(`{"type":"error","id":"x","error":{"code":"rate_limited","retry_after_ms":1500}}`), &got); err != nil || got.retryAfterMs != 1500 || string(got.code) != "rate_limited" {
		t.Errorf("error frame %+v %v", got, err)
	}
	for _, bad := range []string{`{"type":"batch"`, `{"type":"batch","messages":[{"seq":"x"}]}`, `}`} {
		if err := decodeJSONFrame([]byte(bad), &got); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// benchBatch is a batch of n bench messages as the server encodes it.
func benchBatch(n int) []byte {
	b := []byte(`{"type":"batch","room":"bench","messages":[`)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		m := &message.Message{Seq: uint64(i + 1000), ID: "01JD5Z8W3K4M2N7P9Q0R1S2T3U", Room: "bench", Kind: message.KindChat, Scope: message.ScopeRoom,
			User: &message.User{ID: "bench-s1", Name: "bench-s1", Level: 1}, Text: "bench:1764561234567890123", TS: 1764561234567}
		b = m.AppendJSON(b)
	}
	return append(b, `],"cursor":1004,"epoch":"e1"}`...)
}

// The reader's cost per batch of 5 messages (what a 5,000-viewer room sends
// each viewer at 20 msg/s with a 200 ms window): full decoding as the JS
// client does, against the old byte scanner.
func BenchmarkReader(b *testing.B) {
	p := benchBatch(5)
	for _, r := range []struct {
		name string
		fn   func([]byte, *frameInfo) error
	}{{"DecodeJSON", decodeJSONFrame}, {"Scan", scanFrame}} {
		b.Run(r.name, func(b *testing.B) {
			var fi frameInfo
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if err := r.fn(p, &fi); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
