// Package transcode runs the quality ladder (issue 15, M10): for each live
// room, one supervised ffmpeg child process reads the room's stream over
// RTMP from this node and publishes each rendition back to it as a room of
// its own, {room}_{name} (e.g. show_480p), playable over RTMP, HTTP-FLV and
// HLS like any stream; the HLS master playlist of the room lists them.
//
// The renditions are not rooms of the registry: Rooms wraps the registry
// for the media server so that a rendition exists while its source room
// does, publishes with an internal key only this process knows, and does
// not drive the room lifecycle (no live/ended messages for renditions).
//
// The child is supervised: when it dies while the source is live it is
// restarted with exponential backoff (1 s doubling to 30 s, reset after it
// ran for a minute); when the publisher leaves it is killed. Its CPU time
// is exported per room in /metrics.
package transcode

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Rendition is one rung of the ladder: a height and a video bitrate.
type Rendition struct {
	Name    string // "480p"
	Height  int    // 480
	Bitrate int    // video bits per second
}

// Parse reads --transcode: "720p:2500k,480p:1000k,240p:400k" (bitrates
// in k or M bits per second). "" is no ladder.
func Parse(spec string) ([]Rendition, error) {
	var out []Rendition
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, rate, ok := strings.Cut(part, ":")
		h, err := strconv.Atoi(strings.TrimSuffix(name, "p"))
		if !ok || !strings.HasSuffix(name, "p") || err != nil || h < 64 || h > 4320 || h%2 != 0 {
			return nil, fmt.Errorf("--transcode: want HEIGHTp:BITRATE (e.g. 480p:1000k), got %q", part)
		}
		br, err := parseBitrate(rate)
		if err != nil {
			return nil, fmt.Errorf("--transcode %q: %w", part, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("--transcode: %s twice", name)
		}
		seen[name] = true
		out = append(out, Rendition{Name: name, Height: h, Bitrate: br})
	}
	return out, nil
}

func parseBitrate(s string) (int, error) {
	mul := 1
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mul, s = 1000, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mul, s = 1000_000, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n*mul < 50_000 || n*mul > 100_000_000 {
		return 0, errors.New("bitrate must be 50k–100M")
	}
	return n * mul, nil
}

// Names lists the renditions' names, in ladder order.
func Names(l []Rendition) []string {
	out := make([]string, len(l))
	for i, r := range l {
		out[i] = r.Name
	}
	return out
}

// keys makes and checks the internal stream keys renditions publish with.
type keys struct{ secret []byte }

func newKeys() keys {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return keys{secret: b}
}

const keyPrefix = "tc_"

func (k keys) key(room string) string {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(room))
	return keyPrefix + room + "." + hex.EncodeToString(m.Sum(nil)[:16])
}

// room returns the rendition room a key publishes to, if it is ours.
func (k keys) room(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", false
	}
	room := rest[:i]
	return room, hmac.Equal([]byte(k.key(room)), []byte(key))
}
