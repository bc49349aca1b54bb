package transcode

import (
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	got, err := Parse("720p:2500k, 480p:1M ,240p:400000")
	want := []Rendition{{"720p", 720, 2_500_000}, {"480p", 480, 1_000_000}, {"240p", 240, 400_000}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse: %v %+v", err, got)
	}
	if l, err := Parse(""); err != nil || l != nil {
		t.Errorf("empty spec: %v %v", l, err)
	}
	for _, bad := range []string{"720:2500k", "720p", "720p:fast", "721p:1000k", "32p:100k", "480p:10k", "480p:1000k,480p:500k"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// Renditions publish with keys only this ladder makes; they name their room.
func TestKeysAndNames(t *testing.T) {
	rungs, _ := Parse("720p:2500k,480p:1000k")
	l, err := New(Config{Renditions: rungs, RTMP: func() string { return "127.0.0.1:1935" }}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	k := l.keys.key("show_480p")
	if room, ok := l.keys.room(k); !ok || room != "show_480p" {
		t.Errorf("own key: %q %v", room, ok)
	}
	other, _ := New(Config{Renditions: rungs}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if _, ok := other.keys.room(k); ok {
		t.Error("another process's ladder accepted the key")
	}
	if _, ok := l.keys.room(strings.Replace(k, "show_480p", "other_480p", 1)); ok {
		t.Error("a key for another room was accepted")
	}
	if src, name, ok := l.Source("my_show_720p"); !ok || src != "my_show" || name != "720p" {
		t.Errorf("Source: %q %q %v", src, name, ok)
	}
	if _, _, ok := l.Source("show_360p"); ok {
		t.Error("a rung not on the ladder")
	}
	args := strings.Join(l.args("show"), " ")
	for _, want := range []string{"-i rtmp://127.0.0.1:1935/live/show", "scale=-2:720", "scale=-2:480", "-b:v 2500000", "rtmp://127.0.0.1:1935/live/tc_show_480p."} {
		if !strings.Contains(args, want) {
			t.Errorf("ffmpeg args lack %q: %s", want, args)
		}
	}
}
