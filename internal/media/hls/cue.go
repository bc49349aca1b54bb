package hls

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"roomcast/internal/media/hub"
)

// maxCues bounds the date ranges a muxer keeps (the newest win).
const maxCues = 16

// dateRange is a cue as an EXT-X-DATERANGE line of the media playlists
// (issue 12: the quiz's onQuizQuestion, placed on the program date-time
// timeline gohlslib writes, so hls.js fires it when playback reaches it).
type dateRange struct {
	at   time.Time
	line string
}

// addCue records f's cue at its position on the playlist clock.
func (mx *muxer) addCue(f *hub.Frame, base time.Time) {
	c, ok := hub.CueOf(f)
	if !ok {
		return
	}
	at := base.Add(f.PTS)
	keys := make([]string, 0, len(c.Data))
	for k := range c.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	id := c.Name
	var attrs strings.Builder
	for _, k := range keys {
		name := "X-" + strings.ToUpper(strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return '-'
		}, k))
		switch v := c.Data[k].(type) {
		case int:
			fmt.Fprintf(&attrs, ",%s=%d", name, v)
			id += "-" + strconv.Itoa(v)
		case int64:
			fmt.Fprintf(&attrs, ",%s=%d", name, v)
			id += "-" + strconv.FormatInt(v, 10)
		case float64:
			fmt.Fprintf(&attrs, ",%s=%s", name, strconv.FormatFloat(v, 'f', -1, 64))
		default:
			s := strings.NewReplacer(`"`, "'", "\n", " ", "\r", " ").Replace(fmt.Sprint(v))
			fmt.Fprintf(&attrs, ",%s=%q", name, s)
			id += "-" + s
		}
	}
	line := fmt.Sprintf("#EXT-X-DATERANGE:ID=%q,CLASS=\"com.roomcast.cue\",START-DATE=%q,DURATION=0,X-NAME=%q%s\n",
		id, at.UTC().Format("2006-01-02T15:04:05.000Z"), c.Name, attrs.String())
	mx.mu.Lock()
	mx.cues = append(mx.cues, dateRange{at: at, line: line})
	if len(mx.cues) > maxCues {
		mx.cues = mx.cues[len(mx.cues)-maxCues:]
	}
	mx.mu.Unlock()
}

// withCues inserts the muxer's date ranges into a media playlist before its
// first segment (EXT-X-DATERANGE may appear anywhere; the playlist has the
// EXT-X-PROGRAM-DATE-TIME tags it needs).
func (mx *muxer) withCues(pl []byte) []byte {
	mx.mu.Lock()
	cues := append([]dateRange(nil), mx.cues...)
	mx.mu.Unlock()
	if len(cues) == 0 || !bytes.Contains(pl, []byte("#EXT-X-PROGRAM-DATE-TIME")) {
		return pl
	}
	var out bytes.Buffer
	done := false
	for _, line := range strings.SplitAfter(string(pl), "\n") {
		if !done && (strings.HasPrefix(line, "#EXT-X-PROGRAM-DATE-TIME") || strings.HasPrefix(line, "#EXTINF") ||
			strings.HasPrefix(line, "#EXT-X-PART:")) {
			for _, c := range cues {
				out.WriteString(c.line)
			}
			done = true
		}
		out.WriteString(line)
	}
	return out.Bytes()
}

func (mx *muxer) hasCues() bool {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return len(mx.cues) > 0
}
