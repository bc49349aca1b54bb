package record

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"roomcast/internal/media/hub"
)

// On disk a session's recording is a directory:
//
//	init-K.mp4     the fMP4 initialization segment of the session's K-th publish
//	seg-N.m4s      fMP4 media segments (moof+mdat), numbered across the session
//	segments.jsonl one line per complete segment (segEntry), appended after
//	               the segment file is written and synced
//
// A segment enters the manifest only once it is complete and on disk, so a
// crash loses at most the segment being written (Config.Segment long).
// Timestamps (tfdt) are on the session clock, so the segments of every
// publish of the session form one timeline and the whole-session MP4 is
// init-1.mp4 followed by every segment.

const manifestName = "segments.jsonl"

// segEntry is one manifest line.
type segEntry struct {
	N       int   `json:"n"`        // seg-N.m4s
	Init    int   `json:"init"`     // init-K.mp4 it needs
	StartMS int64 `json:"start_ms"` // on the session clock
	DurMS   int64 `json:"dur_ms"`
	PDT     int64 `json:"pdt"` // wall clock of the start, Unix ms
	Disc    bool  `json:"disc"`
	Bytes   int64 `json:"bytes"`
}

func initName(k int) string { return "init-" + strconv.Itoa(k) + ".mp4" }
func segName(n int) string  { return "seg-" + strconv.Itoa(n) + ".m4s" }

// readManifest returns the complete segments of dir, in order. A torn last
// line (crash while appending) is ignored.
func readManifest(dir string) ([]segEntry, error) {
	f, err := os.Open(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []segEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e segEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.N <= 0 {
			continue
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// track is one track of the publish being written.
type track struct {
	id      int
	scale   int64 // timescale (90 kHz video, sample rate audio)
	video   bool
	samples []sample
	lastDur time.Duration // duration of the previous sample (for the last one of a segment)
}

type sample struct {
	dts, pts time.Duration
	key      bool
	payload  []byte
}

// maxSegmentBytes forces a cut when a GOP is absurdly long.
const maxSegmentBytes = 64 << 20

// segWriter writes one publish of a session. Owned by the session's
// recorder goroutine.
type segWriter struct {
	dir      string
	initK    int
	target   time.Duration
	offset   time.Duration // session clock at this publish's DTS 0
	clockMS  int64         // wall Unix ms at which the session clock read 0
	video    *track
	audio    *track
	params   [][]byte // current video parameter sets, put before each IDR
	next     *int     // next segment number, shared by the session's publishes
	disc     bool     // the next segment follows a discontinuity
	bytes    int
	written  time.Duration // end of the last written segment (session clock)
	wroteAny bool
}

// newSegWriter writes the init segment of publish k for tracks.
func newSegWriter(dir string, k int, t hub.Tracks, start hub.Start, target, offset time.Duration, clockMS int64, next *int, disc bool) (*segWriter, error) {
	w := &segWriter{dir: dir, initK: k, target: target, offset: offset, clockMS: clockMS, next: next, disc: disc}
	var init fmp4.Init
	id := 1
	if v := t.Video; v != nil {
		var c codecs.Codec
		switch v.Codec {
		case "h264":
			c = &codecs.H264{SPS: v.SPS, PPS: v.PPS}
		case "h265":
			c = &codecs.H265{VPS: v.VPS, SPS: v.SPS, PPS: v.PPS}
		default:
			return nil, fmt.Errorf("record: codec %q", v.Codec)
		}
		w.video = &track{id: id, scale: 90000, video: true}
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: id, TimeScale: 90000, Codec: c})
		id++
	}
	if a := t.Audio; a != nil && a.Config != nil {
		w.audio = &track{id: id, scale: int64(a.Config.SampleRate)}
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: id, TimeScale: uint32(a.Config.SampleRate), Codec: &codecs.MPEG4Audio{Config: *a.Config}})
	}
	if len(init.Tracks) == 0 {
		return nil, errors.New("record: no track")
	}
	for _, f := range start.Config {
		if f.Kind == hub.KindVideo {
			w.params = f.AU
		}
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return nil, fmt.Errorf("record: init segment: %w", err)
	}
	if err := writeSynced(filepath.Join(dir, initName(k)), buf.Bytes()); err != nil {
		return nil, err
	}
	return w, nil
}

// write adds one frame; it cuts and writes a segment first when f is a
// key frame and the pending segment is long enough.
func (w *segWriter) write(f *hub.Frame) error {
	if f.Kind == hub.KindMeta {
		return nil
	}
	if f.Config {
		if f.Kind == hub.KindVideo {
			w.params = f.AU
		}
		return nil
	}
	var tr *track
	switch f.Kind {
	case hub.KindVideo:
		tr = w.video
	case hub.KindAudio:
		tr = w.audio
	}
	if tr == nil {
		return nil
	}
	cutter := tr.video || w.video == nil // audio-only streams cut on any audio frame
	if cutter && f.Key && w.pending() && (f.DTS-w.segStart() >= w.target || w.bytes > maxSegmentBytes) {
		if err := w.flush(f.DTS); err != nil {
			return err
		}
	}
	if !w.pending() && !(cutter && f.Key) {
		return nil // a segment starts with a key frame
	}
	var payload []byte
	if tr.video {
		au := f.AU
		if f.Key && len(w.params) > 0 {
			au = append(append(make([][]byte, 0, len(w.params)+len(au)), w.params...), au...)
		}
		b, err := h264.AVCC(au).Marshal()
		if err != nil {
			return nil // a malformed access unit is skipped, not fatal
		}
		payload = b
	} else {
		payload = append([]byte(nil), f.AU[0]...)
		if len(f.AU) != 1 {
			return nil
		}
	}
	tr.samples = append(tr.samples, sample{dts: f.DTS, pts: f.PTS, key: f.Key, payload: payload})
	w.bytes += len(payload)
	return nil
}

func (w *segWriter) pending() bool {
	return (w.video != nil && len(w.video.samples) > 0) || (w.audio != nil && len(w.audio.samples) > 0)
}

// segStart is the DTS of the pending segment's first frame.
func (w *segWriter) segStart() time.Duration {
	s := time.Duration(-1)
	for _, t := range []*track{w.video, w.audio} {
		if t != nil && len(t.samples) > 0 && (s < 0 || t.samples[0].dts < s) {
			s = t.samples[0].dts
		}
	}
	return max(s, 0)
}

// flush writes the pending segment; cut is the DTS of the frame that
// starts the next one (0 at the end of the publish).
func (w *segWriter) flush(cut time.Duration) error {
	if !w.pending() {
		return nil
	}
	start := w.segStart()
	end := start
	n := *w.next
	part := fmp4.Part{SequenceNumber: uint32(n)}
	for _, t := range []*track{w.video, w.audio} {
		if t == nil || len(t.samples) == 0 {
			continue
		}
		pt := &fmp4.PartTrack{ID: t.id, BaseTime: uint64(toScale(w.offset+t.samples[0].dts, t.scale))}
		for i, s := range t.samples {
			var d time.Duration
			switch {
			case i+1 < len(t.samples):
				d = t.samples[i+1].dts - s.dts
			case t.video && cut > s.dts:
				d = cut - s.dts
			default:
				d = t.lastDur
			}
			if d <= 0 {
				d = t.lastDur
			}
			t.lastDur = d
			// Durations in the track's timescale, from absolute times so
			// rounding never accumulates.
			du := toScale(w.offset+s.dts+d, t.scale) - toScale(w.offset+s.dts, t.scale)
			pt.Samples = append(pt.Samples, &fmp4.Sample{
				Duration: uint32(max(du, 0)), PTSOffset: int32(toScale(s.pts, t.scale) - toScale(s.dts, t.scale)),
				IsNonSyncSample: t.video && !s.key, Payload: s.payload,
			})
			end = max(end, s.dts+d)
		}
		part.Tracks = append(part.Tracks, pt)
		t.samples = t.samples[:0]
	}
	w.bytes = 0
	var buf seekablebuffer.Buffer
	if err := part.Marshal(&buf); err != nil {
		return fmt.Errorf("record: segment %d: %w", n, err)
	}
	if err := writeSynced(filepath.Join(w.dir, segName(n)), buf.Bytes()); err != nil {
		return err
	}
	startMS := (w.offset + start).Milliseconds()
	e := segEntry{N: n, Init: w.initK, StartMS: startMS, DurMS: max((end - start).Milliseconds(), 1),
		PDT: w.clockMS + startMS, Disc: w.disc, Bytes: int64(len(buf.Bytes()))}
	w.disc = false
	*w.next = n + 1
	w.written, w.wroteAny = w.offset+end, true
	return appendManifest(w.dir, e)
}

func toScale(d time.Duration, scale int64) int64 {
	sec := int64(d / time.Second)
	rem := int64(d % time.Second)
	return sec*scale + rem*scale/int64(time.Second)
}

// writeSynced writes b to path durably (temp file, fsync, rename).
func writeSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("record: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

func appendManifest(dir string, e segEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, manifestName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("record: manifest: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record: manifest: %w", err)
	}
	return nil
}
