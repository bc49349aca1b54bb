package quiz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

func TestSealOpen(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	key := QuestionKey(secret, "act", 2)
	if len(key) != 32 || bytes.Equal(key, QuestionKey(secret, "act", 3)) || bytes.Equal(key, QuestionKey(secret, "other", 2)) {
		t.Fatal("keys must be 32 bytes and differ per activity and question")
	}
	want := Result{N: 2, Correct: false, Revived: true, Alive: true, CardsLeft: 1}
	sealed, err := Seal(key, "act", want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(key, "act", 2, sealed)
	if err != nil || got != want {
		t.Fatalf("open: %+v %v", got, err)
	}
	if _, err := Open(QuestionKey(secret, "act", 3), "act", 2, sealed); err == nil {
		t.Fatal("opened with another key")
	}
	if _, err := Open(key, "act", 1, sealed); err == nil {
		t.Fatal("opened with other additional data")
	}
	sealed[20] ^= 1
	if _, err := Open(key, "act", 2, sealed); err == nil {
		t.Fatal("opened altered bytes")
	}
	if len(KeyHash(key)) != 64 {
		t.Fatal("key hash is hex SHA-256")
	}
}

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		prize   int64
		winners []string
		want    string
	}{
		{100, []string{"c", "a", "b"}, "[{a 34} {b 33} {c 33}]"},
		{1, []string{"g", "f", "e", "d", "c", "b", "a"}, "[{a 1} {b 0} {c 0} {d 0} {e 0} {f 0} {g 0}]"},
		{0, []string{"a", "b"}, "[{a 0} {b 0}]"},
		{99, nil, "[]"},
		{10, []string{"a", "a", "b"}, "[{a 5} {b 5}]"},
	} {
		got := Split(c.prize, c.winners)
		var sum int64
		for _, p := range got {
			sum += p.AmountCents
		}
		if fmt.Sprint(got) != c.want || (len(got) > 0 && sum != c.prize) {
			t.Errorf("Split(%d, %v) = %v (sum %d), want %s", c.prize, c.winners, got, sum, c.want)
		}
	}
}

func FuzzSplit(f *testing.F) {
	f.Add(int64(100), 3)
	f.Add(int64(1), 7)
	f.Fuzz(func(t *testing.T, prize int64, k int) {
		if prize < 0 || k < 0 || k > 64 { // small k keeps 150,000 execs cheap; the rule is the same
			return
		}
		ws := make([]string, k)
		for i := range ws {
			ws[i] = fmt.Sprint("u", i)
		}
		var sum int64
		ps := Split(prize, ws)
		for _, p := range ps {
			if p.AmountCents < prize/int64(k) || p.AmountCents > prize/int64(k)+1 {
				t.Fatalf("share %d of %d/%d", p.AmountCents, prize, k)
			}
			sum += p.AmountCents
		}
		if k > 0 && sum != prize {
			t.Fatalf("sum %d != %d", sum, prize)
		}
	})
}

func TestAppendResultIsJSON(t *testing.T) {
	for _, r := range []Result{{N: 3, Correct: true, Alive: true, CardsLeft: 2}, {N: 50, Revived: true}} {
		var got Result
		if err := json.Unmarshal(appendResult(nil, r), &got); err != nil || got != r {
			t.Fatalf("%+v: %+v %v", r, got, err)
		}
	}
}

func BenchmarkSealAnswer(b *testing.B) {
	aead, _ := gcm(QuestionKey(bytes.Repeat([]byte{1}, 32), "act", 1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sealWith(aead, "act", Result{N: 1, Correct: true, Alive: true}); err != nil {
			b.Fatal(err)
		}
	}
}
