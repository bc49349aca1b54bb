package hls

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"roomcast/internal/media/access"
	"roomcast/internal/media/flv"
	"roomcast/internal/media/hub"
)

// ServeMaster serves GET /live/{room}.m3u8 when the room has renditions
// (the quality ladder, issue 15): one multivariant playlist listing the
// source and every live rendition as variants, each with the bandwidth,
// resolution and codecs its own muxer reports, so players switch between
// them (ABR). query(v), when not nil, is the query string that signs
// variant v's URIs (signed play URLs are per room).
func (s *Server) ServeMaster(w http.ResponseWriter, r *http.Request, room string, renditions []string, query func(room string) string) {
	if !s.allow(w, r, room) {
		return
	}
	ev := access.Event{Room: room, Stream: "live/" + room, Protocol: hub.ProtoHLS, RemoteAddr: r.RemoteAddr, Query: r.URL.RawQuery}
	if err := s.acc.OnPlay(r.Context(), ev); err != nil {
		s.m.Metrics().Refused.WithLabelValues("play", "hook").Inc()
		flv.WriteError(w, http.StatusForbidden, "forbidden", "refused by on_play hook")
		return
	}
	if s.find(w, r, room) == nil {
		return
	}
	var head, body bytes.Buffer
	head.WriteString("#EXTM3U\n")
	var last *recorder
	for i, v := range append([]string{room}, renditions...) {
		mx := s.lookup(v)
		if mx == nil || mx.isEnded() {
			continue
		}
		r2 := r.Clone(r.Context())
		if query != nil && v != room {
			r2.URL.RawQuery = query(v)
		}
		rec := s.capture(mx, r2, "index.m3u8", false)
		if rec.status != http.StatusOK {
			continue
		}
		last = rec
		appendVariant(&head, &body, rewriteURIs(rec.body.Bytes(), url.PathEscape(v)+"/"), "_"+strconv.Itoa(i))
	}
	if last == nil {
		flv.WriteError(w, http.StatusServiceUnavailable, "unavailable", "stream has no HLS content yet")
		return
	}
	head.WriteString("\n")
	head.Write(body.Bytes())
	writePlaylist(w, last, head.Bytes())
}

// appendVariant copies one muxer's multivariant playlist into a combined
// one: the version and independent-segments tags once (into head), its
// renditions and stream lines with group ids made unique by suffix.
func appendVariant(head, body *bytes.Buffer, pl []byte, suffix string) {
	for _, line := range strings.Split(string(pl), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "", t == "#EXTM3U":
		case strings.HasPrefix(t, "#EXT-X-VERSION"), strings.HasPrefix(t, "#EXT-X-INDEPENDENT-SEGMENTS"):
			if !bytes.Contains(head.Bytes(), []byte(t)) {
				head.WriteString(t + "\n")
			}
		case strings.HasPrefix(t, "#EXT-X-MEDIA"), strings.HasPrefix(t, "#EXT-X-STREAM-INF"):
			for _, attr := range []string{`GROUP-ID="`, `AUDIO="`, `VIDEO="`, `SUBTITLES="`} {
				t = renameGroup(t, attr, suffix)
			}
			body.WriteString(t + "\n")
		default:
			body.WriteString(t + "\n")
		}
	}
}

func renameGroup(line, attr, suffix string) string {
	i := strings.Index(line, attr)
	if i < 0 {
		return line
	}
	j := strings.IndexByte(line[i+len(attr):], '"')
	if j < 0 {
		return line
	}
	end := i + len(attr) + j
	return line[:end] + suffix + line[end:]
}
