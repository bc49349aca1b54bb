package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"
)

// httpDoer is one client's HTTP connection as the scenarios use it: Do
// returns the status and a body valid until the next call.
type httpDoer interface {
	Do(method string, path []byte, auth string, body []byte) (status int, resp []byte, err error)
	release()
}

// stdHTTP is the ordinary client (issue 14): Go's net/http with keep-alive,
// as an app or a service polling roomcast would use it. It costs the load
// generator more CPU per request than rawHTTP, but the server sees exactly
// what real clients send (headers included).
type stdHTTP struct {
	ctx  context.Context
	c    *http.Client
	base string // scheme://host[:port][path]
	buf  bytes.Buffer
}

// newStdTransport returns the keep-alive transport a scenario's clients
// share (one idle connection per client, as separate apps would keep).
func newStdTransport(conns int, timeout time.Duration) *http.Transport {
	return &http.Transport{MaxIdleConns: conns + 16, MaxIdleConnsPerHost: conns + 16, IdleConnTimeout: 90 * time.Second,
		ResponseHeaderTimeout: timeout, DisableCompression: true}
}

func newStdHTTP(ctx context.Context, tr *http.Transport, base string, timeout time.Duration) *stdHTTP {
	return &stdHTTP{ctx: ctx, c: &http.Client{Transport: tr, Timeout: timeout}, base: base}
}

func (h *stdHTTP) Do(method string, path []byte, auth string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(h.ctx, method, h.base+string(path), rd)
	if err != nil {
		return 0, nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	h.buf.Reset()
	if _, err := h.buf.ReadFrom(io.LimitReader(resp.Body, maxBody+1)); err != nil {
		return 0, nil, err
	}
	if h.buf.Len() > maxBody {
		return 0, nil, errBodyTooLarge
	}
	return resp.StatusCode, h.buf.Bytes(), nil
}

func (h *stdHTTP) release() {}
