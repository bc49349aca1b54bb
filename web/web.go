// Package web serves roomcast's browser pages (issue 4, M8): the list of live
// rooms at /, the viewer page at /room/{id} and the anchor's studio at
// /studio, the replay of a recorded session at /replay/{sid} (issue 10),
// with their styles, scripts, the vendored players (mpegts.js,
// hls.js) and the JavaScript client module at /client/roomcast.js.
//
// Everything is embedded with go:embed, so the binary serves the pages with
// no CDN and no network: the players are vendored (with their licences) by
// scripts/vendor-web.sh and committed. The pages are plain JavaScript
// modules with no build step; they talk to the server only through the
// public API (docs/api.md) and the WebSocket protocol (docs/protocol.md),
// like any other client.
//
// Every user-written string is rendered as text (textContent), and the pages
// are served with a Content-Security-Policy that allows no inline script, so
// a message, a name or a title can never run script.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static client
var files embed.FS

// Options configure the pages. The zero value is valid: RTMP disabled.
type Options struct {
	// RTMP is the server's RTMP listen address (--rtmp, e.g. ":1935"). The
	// studio shows the OBS server URL with the page's host name and this
	// port; "" means RTMP ingest is off and the studio says so.
	RTMP string
	// RTMPAddr, when set, returns the address RTMP really listens on (useful
	// with port 0); it wins over RTMP when it returns a non-empty address.
	RTMPAddr func() string
	// Renditions are the quality ladder's renditions ("720p", …) the viewer
	// page offers besides Auto; nil means no choice (issue 15).
	Renditions []string
}

// csp forbids inline script and any script not served by roomcast itself.
// Players need blob: workers and media; connect-src stays open to http(s)
// and ws(s) because the route service may hand out another node's URLs.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self' http: https: ws: wss:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'"

// asset is one embedded file, ready to serve.
type asset struct {
	data  []byte
	ctype string
	etag  string
}

// Handler serves the pages and assets.
type Handler struct {
	opts   Options
	assets map[string]asset // by path inside the embedded FS, e.g. "static/room.html"
}

// New loads the embedded files.
func New(o Options) *Handler {
	h := &Handler{opts: o, assets: map[string]asset{}}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case ".js", ".mjs":
			ct = "text/javascript; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		case ".md", ".txt", "":
			ct = "text/plain; charset=utf-8"
		}
		if strings.HasSuffix(p, "LICENSE") || strings.HasSuffix(p, "VERSIONS") || strings.HasSuffix(p, "SHA256SUMS") {
			ct = "text/plain; charset=utf-8"
		}
		h.assets[p] = asset{data: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("web: embedded files: " + err.Error()) // only a broken build gets here
	}
	return h
}

// Mount registers the pages on mux. It claims "GET /{$}", "GET /room/{id}",
// "GET /replay/{sid}",
// "GET /studio", "GET /static/", "GET /client/", "GET /favicon.ico" and
// "GET /web/config.json", none of which the API uses.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", h.page("static/index.html"))
	mux.HandleFunc("GET /room/{id}", h.page("static/room.html"))
	mux.HandleFunc("GET /replay/{sid}", h.page("static/replay.html"))
	mux.HandleFunc("GET /studio", h.page("static/studio.html"))
	mux.HandleFunc("GET /studio/{$}", h.page("static/studio.html"))
	mux.HandleFunc("GET /static/", h.files)
	mux.HandleFunc("GET /client/", h.files)
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		h.serve(w, r, "static/favicon.svg")
	})
	mux.HandleFunc("GET /web/config.json", h.config)
}

// Mount is New(o).Mount(mux).
func Mount(mux *http.ServeMux, o Options) { New(o).Mount(mux) }

func (h *Handler) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Content-Type-Options", "nosniff")
		h.serve(w, r, name)
	}
}

func (h *Handler) files(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if strings.HasSuffix(p, ".html") {
		http.NotFound(w, r) // pages are served at their routes, with their headers
		return
	}
	h.serve(w, r, p)
}

// serve writes an embedded file with an ETag; browsers revalidate (no-cache)
// so a new binary's files are picked up at once and unchanged ones cost a 304.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, p string) {
	a, ok := h.assets[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("ETag", a.etag)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Type", a.ctype)
	hd.Set("Content-Length", strconv.Itoa(len(a.data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.data)
	}
}

// config tells the pages what they cannot learn from the API: the RTMP
// ingest port (the studio builds rtmp://HOST:PORT/live from it).
func (h *Handler) config(w http.ResponseWriter, r *http.Request) {
	out := struct {
		RTMP       bool     `json:"rtmp"`
		RTMPPort   int      `json:"rtmp_port,omitempty"`
		RTMPApp    string   `json:"rtmp_app"`
		Renditions []string `json:"renditions"`
	}{RTMPApp: "live", Renditions: h.opts.Renditions}
	if out.Renditions == nil {
		out.Renditions = []string{}
	}
	addr := h.opts.RTMP
	if h.opts.RTMPAddr != nil {
		if a := h.opts.RTMPAddr(); a != "" {
			addr = a
		}
	}
	if addr != "" {
		if _, port, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(port); err == nil && n > 0 {
				out.RTMP, out.RTMPPort = true, n
			}
		}
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
