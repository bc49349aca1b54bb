package web_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"roomcast/web"
)

func serveWeb(t *testing.T, o web.Options) *httptest.Server {
	mux := http.NewServeMux()
	web.Mount(mux, o)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRoutes(t *testing.T) {
	srv := serveWeb(t, web.Options{RTMP: ":1935"})
	for _, c := range []struct {
		path, ctype, contains string
		page                  bool
	}{
		{"/", "text/html", "/static/js/index.js", true},
		{"/room/some-room", "text/html", "/static/js/room.js", true},
		{"/studio", "text/html", "/static/js/studio.js", true},
		{"/static/js/room.js", "text/javascript", "RoomClient", false},
		{"/client/roomcast.js", "text/javascript", "export class RoomClient", false},
		{"/static/css/app.css", "text/css", ".danmaku", false},
		{"/static/vendor/mpegts.min.js", "text/javascript", "mpegts", false},
		{"/static/vendor/hls.min.js", "text/javascript", "Hls", false},
		{"/static/vendor/hls.LICENSE", "text/plain", "Apache", false},
		{"/favicon.ico", "image/svg+xml", "<svg", false},
		{"/web/config.json", "application/json", `"rtmp_port":1935`, false},
	} {
		resp, body := get(t, srv.URL+c.path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contains, strings.Contains(body, c.contains))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); c.page != strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", c.path, csp)
		}
	}
	for _, p := range []string{"/static/room.html", "/static/nope.js", "/room/", "/static/../web.go"} {
		if resp, _ := get(t, srv.URL+p); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	// Revalidation costs a 304.
	resp, _ := get(t, srv.URL+"/static/vendor/hls.min.js")
	etag := resp.Header.Get("ETag")
	if resp, body := get(t, srv.URL+"/static/vendor/hls.min.js", "If-None-Match", etag); resp.StatusCode != 304 || body != "" {
		t.Errorf("If-None-Match: %d, %d bytes", resp.StatusCode, len(body))
	}
	// RTMP off.
	off := serveWeb(t, web.Options{})
	if _, body := get(t, off.URL+"/web/config.json"); !strings.Contains(body, `"rtmp":false`) {
		t.Errorf("config with RTMP off: %s", body)
	}
	bound := serveWeb(t, web.Options{RTMP: "127.0.0.1:0", RTMPAddr: func() string { return "127.0.0.1:41935" }})
	if _, body := get(t, bound.URL+"/web/config.json"); !strings.Contains(body, `"rtmp_port":41935`) {
		t.Errorf("config with a bound RTMP address: %s", body)
	}
}

// The vendored players are the files scripts/vendor-web.sh wrote, with their
// licences.
func TestVendoredPlayers(t *testing.T) {
	sums, err := os.ReadFile("static/vendor/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		f := strings.Fields(line)
		b, err := os.ReadFile(filepath.Join("static/vendor", f[1]))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != f[0] {
			t.Errorf("%s does not match SHA256SUMS: re-run scripts/vendor-web.sh", f[1])
		}
	}
	for _, f := range []string{"mpegts.LICENSE", "hls.LICENSE", "VERSIONS"} {
		if _, err := os.Stat(filepath.Join("static/vendor", f)); err != nil {
			t.Error(err)
		}
	}
	v, _ := os.ReadFile("static/vendor/VERSIONS")
	if !strings.Contains(string(v), "mpegts.js 1.8.2") || !strings.Contains(string(v), "hls.js 1.7.4") {
		t.Errorf("VERSIONS: %s", v)
	}
}

// Our pages and scripts never build markup from strings: no inline script or
// handlers in the HTML, no innerHTML-like sinks in the JavaScript.
func TestNoHTMLSinks(t *testing.T) {
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]on`)
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|\son[a-z]+\s*=`)
	for _, root := range []string{"static", "client"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.Contains(p, "vendor") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			switch filepath.Ext(p) {
			case ".js":
				if m := sinks.Find(b); m != nil {
					t.Errorf("%s uses %s", p, m)
				}
			case ".html":
				if m := inline.Find(b); m != nil {
					t.Errorf("%s has inline script or a handler: %q", p, m)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
