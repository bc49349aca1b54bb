package bench

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"roomcast/internal/message"
)

func TestScanFrame(t *testing.T) {
	var fi frameInfo
	batch := `{"type":"batch","room":"r","messages":[` +
		`{"seq":7,"id":"a","room":"r","kind":"chat","scope":"room","user":{"id":"u","name":"\"seq\":99","level":3},"text":"bench:1700000000000000001","priority":1,"ts":1},` +
		`{"id":"b","seq":8,"kind":"system","data":{"seq":1234,"text":"bench:5"},"text":"hi \"bench:1\" \\"},` +
		`{"seq":0,"scope":"user","text":"bench:42 xxx"}],"cursor":8}`
	if err := scanFrame([]byte(batch), &fi); err != nil {
		t.Fatal(err)
	}
	if fi.typ != frameBatch || !fi.hasCursor || fi.cursor != 8 || fi.hasSeq {
		t.Fatalf("frame %+v", fi)
	}
	want := []msgInfo{{7, 1700000000000000001}, {8, 0}, {0, 42}}
	if fmt.Sprint(fi.msgs) != fmt.Sprint(want) {
		t.Fatalf("msgs %v, want %v", fi.msgs, want)
	}

	poll := ` { "messages" : [ ] , "cursor" : 12 , "poll_after_ms":2500,"reset":true,"online":10000 } `
	if err := scanFrame([]byte(poll), &fi); err != nil {
		t.Fatal(err)
	}
	if fi.typ != frameNone || fi.cursor != 12 || fi.pollAfterMs != 2500 || !fi.reset || len(fi.msgs) != 0 {
		t.Fatalf("poll %+v", fi)
	}
	rl := `{"error":{"code":"rate_limited","message":"slow"},"retry_after_ms":1500}`
	if err := scanFrame([]byte(rl), &fi); err != nil || string(fi.code) != "rate_limited" || fi.retryAfterMs != 1500 {
		t.Fatalf("429 %+v %v", fi, err)
	}
	ack := `{"type":"ack","id":"b3.17","seq":5}`
	if err := scanFrame([]byte(ack), &fi); err != nil || fi.typ != frameAck || !fi.hasSeq || fi.seq != 5 || string(fi.id) != "b3.17" {
		t.Fatalf("ack %+v %v", fi, err)
	}
	if ns, ok := ackTime(fi.id); !ok || ns != 17 {
		t.Fatalf("ackTime %d %v", ns, ok)
	}
	for _, f := range []string{`{"type":"online","room":"r","count":3}`, `{"type":"likes","total":9}`, `{"type":"pong"}`, `{"type":"new-thing"}`} {
		if err := scanFrame([]byte(f), &fi); err != nil || fi.typ == frameNone || fi.typ == frameBatch {
			t.Errorf("%s: %+v %v", f, fi, err)
		}
	}
	for _, bad := range []string{`{"type":"batch"`, `{"a":"unterminated}`, `}`, `{"a" 1}`, `{1:2}`, strings.Repeat("[", 100)} {
		if err := scanFrame([]byte(bad), &fi); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	if v, ok := parseUint([]byte("18446744073709551616")); ok {
		t.Errorf("overflow parsed as %d", v)
	}
	if v, ok := parseUint([]byte("18446744073709551615")); !ok || v != 1<<64-1 {
		t.Errorf("max uint64: %d %v", v, ok)
	}
}

// The scanner must agree with the server's real encoder on every text.
func TestScanMatchesEncoder(t *testing.T) {
	texts := []string{"bench:123", "bench:", "bench:9 pad", `"seq":5`, `\"}],"cursor":1,{`, "<&>", "bench:-1", "bench:\u2028", "\x00\x01", "日本"}
	var fi frameInfo
	for i, text := range texts {
		m := &message.Message{Seq: uint64(i + 1), ID: "x", Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom,
			User: &message.User{ID: "u", Name: text, Level: 1}, Text: text, TS: 1}
		b := []byte(`{"type":"batch","room":"r","messages":[`)
		b = m.AppendJSON(b)
		b = append(b, `],"cursor":77}`...)
		checkAgainstJSON(t, b, &fi)
	}
}

// checkAgainstJSON compares scanFrame with encoding/json on a valid frame.
func checkAgainstJSON(t *testing.T, b []byte, fi *frameInfo) {
	t.Helper()
	var ref struct {
		Type     string `json:"type"`
		Cursor   *uint64
		Messages []struct {
			Seq  uint64 `json:"seq"`
			Text string `json:"text"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	if err := scanFrame(b, fi); err != nil {
		t.Fatalf("scan %s: %v", b, err)
	}
	if len(fi.msgs) != len(ref.Messages) {
		t.Fatalf("%s: %d messages, want %d", b, len(fi.msgs), len(ref.Messages))
	}
	for i, m := range ref.Messages {
		var sent int64
		if rest, ok := strings.CutPrefix(m.Text, benchMark); ok {
			if v, ok := parseUint([]byte(rest)); ok {
				sent = int64(v)
			}
		}
		if fi.msgs[i].seq != m.Seq || fi.msgs[i].sent != sent {
			t.Fatalf("%s: message %d = %+v, want seq %d sent %d", b, i, fi.msgs[i], m.Seq, sent)
		}
	}
}

func FuzzScanFrame(f *testing.F) {
	f.Add([]byte(`{"type":"batch","messages":[{"seq":1,"text":"bench:5"}],"cursor":1}`), uint64(3), "bench:77")
	f.Add([]byte(`{"error":{"code":"x"},"retry_after_ms":1}`), uint64(0), "")
	f.Add([]byte(`[[[{"":""}]]]`), uint64(1<<63), `"\`)
	f.Fuzz(func(t *testing.T, raw []byte, seq uint64, text string) {
		var fi frameInfo
		_ = scanFrame(raw, &fi) // must not panic on anything
		// Structured: whatever the text, the encoder's output scans right.
		m := &message.Message{Seq: seq, ID: text, Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom,
			User: &message.User{ID: text, Name: text}, Text: text, TS: 1}
		b := append([]byte(`{"type":"batch","messages":[`), m.AppendJSON(nil)...)
		b = append(b, ',')
		b = m.AppendJSON(b)
		b = append(b, `],"cursor":1}`...)
		checkAgainstJSON(t, b, &fi)
	})
}

func BenchmarkScanBatch(b *testing.B) {
	var buf []byte
	buf = append(buf, `{"type":"batch","room":"bench","messages":[`...)
	for i := 0; i < 2; i++ {
		if i > 0 {
			buf = append(buf, ',')
		}
		m := &message.Message{Seq: uint64(100 + i), ID: "01HZX5", Room: "bench", Kind: message.KindChat, Scope: message.ScopeRoom,
			User: &message.User{ID: "bench-s0", Name: "bench-s0", Level: 10}, Text: "bench:1700000000000000000", Priority: 12, TS: 1700000000000}
		buf = m.AppendJSON(buf)
	}
	buf = append(buf, `],"cursor":101}`...)
	var fi frameInfo
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		scanFrame(buf, &fi)
	}
}
