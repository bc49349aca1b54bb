package keepalive

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"testing"
)

// Whatever parseHead takes, net/http reads the same way (method, target,
// first Authorization, keep-alive, no body): the keep-alive path never
// answers a request net/http would have read differently or refused.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET /api/rooms/r/messages?cursor=1 HTTP/1.1\r\nHost: h:1\r\n\r\n",
		"GET /p HTTP/1.1\r\nhost: h\r\nAUTHORIZATION: Bearer a\r\nAuthorization: b\r\nConnection: keep-alive\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: h\r\nX:\t v \t\r\nAccept: */*\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"GET /p%2F?x=%zz HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET  /p HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: h\r\nX-A: \xff\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := headEnd(b)
		if end == 0 {
			return
		}
		var r Request
		if !parseHead(b[:end], &r) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:end])))
		if err != nil {
			t.Fatalf("taken here, refused by net/http: %v\n%q", err, b[:end])
		}
		path, err := url.PathUnescape(r.Path)
		if err != nil {
			path = r.Path // undecodable: the handler, which decodes nothing, matches it as it is
		}
		if req.Method != "GET" || err == nil && path != req.URL.Path || req.URL.RawQuery != r.Query ||
			req.Header.Get("Authorization") != r.Authorization || req.Close || req.ContentLength > 0 {
			t.Fatalf("net/http reads %s %q ?%q auth %q close %v; here %q ?%q auth %q\n%q", req.Method, req.URL.Path,
				req.URL.RawQuery, req.Header.Get("Authorization"), req.Close, r.Path, r.Query, r.Authorization, b[:end])
		}
	})
}

func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		head string
		ok   bool
	}{
		{"GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"GET /a HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", false},
		{"GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", false},
		{"GET /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", false},
		{"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false},
		{"GET /a HTTP/1.1\r\nHost: h h\r\n\r\n", false},
		{"GET /a HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", false},
		{"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"GET /a\x80 HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"GET /a HTTP/1.2\r\nHost: h\r\n\r\n", false},
		{"POST /a HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"get /a HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"GET /a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n\r\n", true},
		{"GET /a HTTP/1.1\r\nHost: h\r\nAuthorization:\r\nAuthorization: Bearer t\r\n\r\n", false},
		{"GET /a HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nauthorization: b\r\n\r\n", false},
	} {
		var r Request
		if got := parseHead([]byte(tc.head), &r); got != tc.ok {
			t.Errorf("parseHead(%q) = %v, want %v", tc.head, got, tc.ok)
		}
	}
	if n := headEnd([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\nGET")); n != 27 {
		t.Errorf("headEnd = %d, want 27", n)
	}
	if n := headEnd([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r")); n != 0 {
		t.Errorf("headEnd of an incomplete head = %d", n)
	}
}
