package bench

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRawHTTP(t *testing.T) {
	big := strings.Repeat("0123456789", 5000) // 50 KB: chunked by net/http
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(big[:10000]))
			w.(http.Flusher).Flush()
			w.Write([]byte(big[10000:]))
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(201)
			w.Write(append([]byte(r.Header.Get("Authorization")+"|"), b...))
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		case "/empty":
			w.WriteHeader(204)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := srv.Listener.Addr().String()
	h := newRawHTTP(ctx, u, u, 5*time.Second)
	defer h.release()
	for i := 0; i < 3; i++ {
		st, body, err := h.Do("GET", []byte("/big"), "", nil)
		if err != nil || st != 200 || string(body) != big {
			t.Fatalf("big: %d %v len %d", st, err, len(body))
		}
	}
	st, body, err := h.Do("POST", []byte("/echo"), "tok", []byte(`{"a":1}`))
	if err != nil || st != 201 || string(body) != `Bearer tok|{"a":1}` {
		t.Fatalf("echo: %d %v %q", st, err, body)
	}
	if st, body, err := h.Do("GET", []byte("/empty"), "", nil); err != nil || st != 204 || len(body) != 0 {
		t.Fatalf("empty: %d %v %q", st, err, body)
	}
	if st, body, err := h.Do("GET", []byte("/close"), "", nil); err != nil || st != 200 || string(body) != "bye" || h.c != nil {
		t.Fatalf("close: %d %v %q, conn kept %v", st, err, body, h.c != nil)
	}
	if st, _, err := h.Do("GET", []byte("/nope"), "", nil); err != nil || st != 404 {
		t.Fatalf("404: %d %v", st, err)
	}
	// The server drops the idle connection: a GET is retried, a POST is not.
	srv.CloseClientConnections()
	if st, _, err := h.Do("GET", []byte("/empty"), "", nil); err != nil || st != 204 {
		t.Fatalf("GET after idle close: %d %v", st, err)
	}
	srv.CloseClientConnections()
	if _, _, err := h.Do("POST", []byte("/echo"), "t", []byte("{}")); err == nil {
		t.Log("POST after idle close succeeded (the close raced the write); fine")
	}
	cancel() // the context closes the client
	if _, _, err := h.Do("GET", []byte("/empty"), "", nil); err == nil {
		t.Fatal("Do after the context ended: want an error")
	}
}

// A bare server answering without a length, closing to end the body.
func TestRawHTTPUntilClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 2; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			for {
				l, err := br.ReadString('\n')
				if err != nil || l == "\r\n" {
					break
				}
			}
			if i == 0 {
				io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
			} else {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
			}
			c.Close()
		}
	}()
	h := newRawHTTP(context.Background(), ln.Addr().String(), "x", 5*time.Second)
	defer h.release()
	st, body, err := h.Do("GET", []byte("/"), "", nil)
	if err != nil || st != 200 || string(body) != "until close" {
		t.Fatalf("%d %v %q", st, err, body)
	}
	st, body, err = h.Do("GET", []byte("/"), "", nil)
	if err != nil || st != 200 || !bytes.Equal(body, []byte("hello")) {
		t.Fatalf("chunked with trailer: %d %v %q", st, err, body)
	}
	wg.Wait()
}
