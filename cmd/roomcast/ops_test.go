package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// health exits 0 only for a 200; doctor exits 1 when it finds a problem;
// admin without a subcommand explains itself.
func TestOperatorCommands(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"health", "--url", srv.URL + "/readyz"}, &out, &errb); code != 0 {
		t.Errorf("health of a ready node: exit %d %s", code, errb.String())
	}
	ready = false
	errb.Reset()
	if code := run([]string{"health", "--url", srv.URL + "/readyz"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "503") {
		t.Errorf("health of a draining node: exit %d %q", code, errb.String())
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	out.Reset()
	if code := run([]string{"doctor", "--http", busy.Addr().String(), "--rtmp", "", "--data", t.TempDir()}, &out, &errb); code != 1 ||
		!strings.Contains(out.String(), "is in use by another program") {
		t.Errorf("doctor with a busy port: exit %d\n%s", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"admin"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "roomcast admin login") {
		t.Errorf("admin without a subcommand: exit %d %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"admin", "login", "--data", t.TempDir(), "--public-url", "https://live.example.com/"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "https://live.example.com/studio#code=") {
		t.Errorf("admin login: exit %d %q", code, out.String())
	}
}
