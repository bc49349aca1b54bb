package record

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"roomcast/internal/media/access"
	"roomcast/internal/media/flv"
)

// VOD serves recordings under /vod/:
//
//	GET /vod/{sid}/index.m3u8   HLS (fMP4) playlist of the session: EVENT
//	                            while live, VOD + ENDLIST once ended
//	GET /vod/{sid}/{file}       its init and media segments
//	GET /vod/{sid}.mp4          the whole session as one MP4 (Range: 206/416)
//
// Signed URLs and the on_play hook apply as for live playback: the
// signature is the room's (the query of the playlist is carried into every
// URI it lists), on_play is called for the playlist and the MP4 with
// stream "vod/{sid}".
func (r *Recorder) VOD() http.Handler { return http.HandlerFunc(r.serveVOD) }

func (r *Recorder) serveVOD(w http.ResponseWriter, req *http.Request) {
	flv.SetCORS(w.Header())
	if req.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Headers", "Range")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		flv.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
		return
	}
	rest := strings.TrimPrefix(req.URL.Path, "/vod/")
	sid, file, nested := strings.Cut(rest, "/")
	if !nested {
		var ok bool
		if sid, ok = strings.CutSuffix(rest, ".mp4"); !ok {
			flv.WriteError(w, http.StatusNotFound, "not_found", "use /vod/{session}/index.m3u8 or /vod/{session}.mp4")
			return
		}
	}
	s, err := r.Session(req.Context(), sid)
	if errors.Is(err, ErrNotFound) {
		flv.WriteError(w, http.StatusNotFound, "not_found", "no such session")
		return
	}
	if err != nil {
		flv.WriteError(w, http.StatusServiceUnavailable, "unavailable", "session store unavailable")
		return
	}
	if err := r.acc.CheckSignature(s.Room, req.URL.Query()); err != nil {
		flv.WriteError(w, http.StatusForbidden, "forbidden", err.Error())
		return
	}
	if !s.Recorded || s.dir == "" {
		flv.WriteError(w, http.StatusNotFound, "not_found", "this session has no recording")
		return
	}
	if _, err := os.Stat(s.dir); err != nil {
		flv.WriteError(w, http.StatusNotFound, "not_found", "the recording is not on this node")
		return
	}
	switch {
	case !nested:
		if r.onPlay(w, req, s, "mp4") {
			r.serveMP4(w, req, s)
		}
	case file == "index.m3u8":
		if r.onPlay(w, req, s, "hls") {
			r.servePlaylist(w, req, s)
		}
	case validFile(file):
		w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
		if strings.HasSuffix(file, ".mp4") {
			w.Header().Set("Content-Type", "video/mp4")
		} else {
			w.Header().Set("Content-Type", "video/iso.segment")
		}
		http.ServeFile(w, req, filepath.Join(s.dir, file))
	default:
		flv.WriteError(w, http.StatusNotFound, "not_found", "no such file")
	}
}

// validFile matches init-K.mp4 and seg-N.m4s.
func validFile(f string) bool {
	var num string
	switch {
	case strings.HasPrefix(f, "init-") && strings.HasSuffix(f, ".mp4"):
		num = f[len("init-") : len(f)-len(".mp4")]
	case strings.HasPrefix(f, "seg-") && strings.HasSuffix(f, ".m4s"):
		num = f[len("seg-") : len(f)-len(".m4s")]
	default:
		return false
	}
	n, err := strconv.Atoi(num)
	return err == nil && n > 0 && strconv.Itoa(n) == num
}

func (r *Recorder) onPlay(w http.ResponseWriter, req *http.Request, s Session, proto string) bool {
	ev := access.Event{Room: s.Room, Stream: "vod/" + s.ID, Protocol: proto, RemoteAddr: req.RemoteAddr, Query: req.URL.RawQuery}
	if err := r.acc.OnPlay(req.Context(), ev); err != nil {
		flv.WriteError(w, http.StatusForbidden, "forbidden", "refused by on_play hook")
		return false
	}
	return true
}

// Playlist renders the session's HLS playlist; query ("" or
// "expires=…&sign=…") is appended to every URI.
func Playlist(segs []segEntry, live bool, query string) []byte {
	var b strings.Builder
	target := 1
	for _, e := range segs {
		target = max(target, int(math.Ceil(float64(e.DurMS)/1000)))
	}
	suffix := ""
	if query != "" {
		suffix = "?" + query
	}
	typ := "VOD"
	if live {
		typ = "EVENT"
	}
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:%s\n#EXT-X-INDEPENDENT-SEGMENTS\n", target, typ)
	initK := 0
	for i, e := range segs {
		if i > 0 && e.Disc {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		if e.Init != initK {
			initK = e.Init
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"%s%s\"\n", initName(e.Init), suffix)
		}
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n#EXTINF:%.3f,\n%s%s\n",
			time.UnixMilli(e.PDT).UTC().Format("2006-01-02T15:04:05.000Z"), float64(e.DurMS)/1000, segName(e.N), suffix)
	}
	if !live {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return []byte(b.String())
}

func (r *Recorder) servePlaylist(w http.ResponseWriter, req *http.Request, s Session) {
	segs, err := readManifest(s.dir)
	if err != nil {
		flv.WriteError(w, http.StatusNotFound, "not_found", "the recording has no segments yet")
		return
	}
	q := req.URL.Query()
	query := ""
	if q.Has("sign") {
		query = "expires=" + q.Get("expires") + "&sign=" + q.Get("sign")
	}
	body := Playlist(segs, s.Live, query)
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	if s.Live {
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=60")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// serveMP4 serves the first init segment followed by every media segment
// as one file, with Range support (http.ServeContent).
func (r *Recorder) serveMP4(w http.ResponseWriter, req *http.Request, s Session) {
	segs, err := readManifest(s.dir)
	if err != nil || len(segs) == 0 {
		flv.WriteError(w, http.StatusNotFound, "not_found", "the recording has no segments yet")
		return
	}
	files := []string{filepath.Join(s.dir, initName(segs[0].Init))}
	for _, e := range segs {
		files = append(files, filepath.Join(s.dir, segName(e.N)))
	}
	cat, err := openConcat(files)
	if err != nil {
		flv.WriteError(w, http.StatusNotFound, "not_found", "the recording is incomplete on disk")
		return
	}
	defer cat.Close()
	if rng := req.Header.Get("Range"); rng != "" && rangeStart(rng) >= cat.size {
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(cat.size, 10))
		flv.WriteError(w, http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable",
			"the range starts past the end of the file ("+strconv.FormatInt(cat.size, 10)+" bytes)")
		return
	}
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Content-Disposition", `inline; filename="`+s.ID+`.mp4"`)
	var mod time.Time
	if !s.Live && s.EndedAt != nil {
		mod = *s.EndedAt
		w.Header().Set("ETag", `"`+s.ID+"-"+strconv.FormatInt(cat.size, 10)+`"`)
	}
	http.ServeContent(w, req, s.ID+".mp4", mod, io.NewSectionReader(cat, 0, cat.size))
}

// rangeStart is the first byte of the first range of a bytes= header, or
// -1 (suffix ranges and anything unparsable are left to ServeContent).
func rangeStart(h string) int64 {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok {
		return -1
	}
	first, _, _ := strings.Cut(spec, ",")
	from, _, _ := strings.Cut(strings.TrimSpace(first), "-")
	n, err := strconv.ParseInt(strings.TrimSpace(from), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// concat reads several files as one (io.ReaderAt).
type concat struct {
	files []*os.File
	ends  []int64 // cumulative end offsets
	size  int64
}

func openConcat(paths []string) (*concat, error) {
	c := &concat{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			c.Close()
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			c.Close()
			return nil, err
		}
		c.files = append(c.files, f)
		c.size += fi.Size()
		c.ends = append(c.ends, c.size)
	}
	return c, nil
}

func (c *concat) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= c.size {
			return n, io.EOF
		}
		i := 0
		for c.ends[i] <= pos {
			i++
		}
		start := c.ends[i] - sizeOf(c, i)
		m, err := c.files[i].ReadAt(p[n:min(len(p), n+int(c.ends[i]-pos))], pos-start)
		n += m
		if err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		if m == 0 {
			return n, io.ErrUnexpectedEOF
		}
	}
	return n, nil
}

func sizeOf(c *concat, i int) int64 {
	if i == 0 {
		return c.ends[0]
	}
	return c.ends[i] - c.ends[i-1]
}

func (c *concat) Close() error {
	for _, f := range c.files {
		f.Close()
	}
	return nil
}
