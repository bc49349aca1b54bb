package hub

import (
	"fmt"
	"sort"
	"time"

	"github.com/bluenviron/gortmplib/pkg/amf0"

	"roomcast/internal/media/flvtag"
)

// KindCue frames are script-data cues written into a live stream at the
// publisher's current position (the quiz's onQuizQuestion, issue 12): FLV
// and RTMP viewers receive them as script tags, the HLS muxer as an
// EXT-X-DATERANGE.
const KindCue Kind = KindMeta + 1

// Cue is the cue a KindCue frame carries.
type Cue struct {
	Name string
	Data map[string]any // string, float64/int/int64 or bool values
	At   time.Time      // wall clock at the cue
}

// CueOf returns the cue of a KindCue frame.
func CueOf(f *Frame) (Cue, bool) {
	c, ok := f.cue.(Cue)
	return c, ok
}

// Cue writes a cue into room's live stream at its current position and
// returns that position (the stream's clock in ms since its first frame).
// ok is false when the room is not live.
func (m *Manager) Cue(room, name string, data map[string]any) (videoMS int64, ok bool, err error) {
	s := m.Stream(room)
	if s == nil {
		return 0, false, nil
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	entries := make([]amf0.ObjectEntry, 0, len(keys))
	for _, k := range keys {
		v := data[k]
		switch x := v.(type) {
		case int:
			v = float64(x)
		case int64:
			v = float64(x)
		case string, float64, bool:
		default:
			return 0, false, fmt.Errorf("hub: cue %s: %s is %T", name, k, v)
		}
		entries = append(entries, amf0.ObjectEntry{Key: k, Value: v})
	}
	body, err := flvtag.ScriptBody(name, entries)
	if err != nil {
		return 0, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.ended {
		return 0, false, nil
	}
	dts := s.lastDTS
	f := &Frame{Kind: KindCue, DTS: dts, PTS: dts, Tag: flvtag.TagFromBody(flvtag.TypeScript, uint32(dts/time.Millisecond), body),
		cue: Cue{Name: name, Data: data, At: time.Now()}}
	s.appendLocked(f)
	return dts.Milliseconds(), true, nil
}
