// Package access decides who may publish and play: signed, expiring play
// URLs (anti-leech, M9) and the on_publish / on_unpublish / on_play webhooks
// a host application uses for its own checks.
//
// # Signed play URLs
//
// When a sign key is configured, every play request — HTTP-FLV
// (/live/ROOM.flv), HLS (/live/ROOM.m3u8 and everything under /live/ROOM/)
// and RTMP (rtmp://HOST/live/ROOM) — must carry
//
//	?expires=UNIX&sign=HEX
//
// where UNIX is the expiry time in seconds since the epoch and
//
//	HEX = lowercase hex( HMAC-SHA256( key, ROOM + ":" + UNIX ) )
//
// ROOM is the room id exactly as it appears in the path and UNIX is the
// decimal string exactly as sent. A request after the expiry, or with a
// missing or wrong signature, is refused (HTTP 403 with code "forbidden";
// RTMP NetStream.Play.Forbidden). One signature is valid for all three
// protocols. For HLS the query string is carried into every playlist and
// segment URI, so a signed playlist keeps working until it expires.
//
// # Webhooks
//
// Each hook is an HTTP POST of a JSON Event with a bounded timeout (5 s by
// default). on_publish and on_play refuse the publish/play unless the
// answer is 2xx; a hook that cannot be reached also refuses (fail closed).
// on_unpublish is informative and sent in the background.
package access

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// ErrForbidden is wrapped by every refusal from this package.
var ErrForbidden = errors.New("forbidden")

// Sign returns the sign parameter for room valid until expires (unix s).
func Sign(key, room string, expires int64) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(room))
	m.Write([]byte{':'})
	m.Write([]byte(strconv.FormatInt(expires, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// SignedQuery returns "expires=…&sign=…" for room, valid for ttl from now.
func SignedQuery(key, room string, now time.Time, ttl time.Duration) string {
	exp := now.Add(ttl).Unix()
	return "expires=" + strconv.FormatInt(exp, 10) + "&sign=" + Sign(key, room, exp)
}

// Checker enforces signed URLs and calls the webhooks. The zero value
// allows everything and calls nothing.
type Checker struct {
	SignKey       string // "" disables signed URLs
	HookPublish   string // "" disables the hook
	HookUnpublish string
	HookPlay      string
	// HookRecordDone is POSTed when a session's recording is complete
	// (--hook-record-done); "" disables it.
	HookRecordDone string
	// HookTimeout bounds each webhook call; 0 means 5 s.
	HookTimeout time.Duration
	Client      *http.Client     // nil means a private client
	Now         func() time.Time // nil means time.Now
	Log         *slog.Logger     // nil means slog.Default()

	wg sync.WaitGroup // background on_unpublish calls
}

// CheckSignature verifies the expires/sign parameters of q for room.
func (c *Checker) CheckSignature(room string, q url.Values) error {
	if c == nil || c.SignKey == "" {
		return nil
	}
	exp, sig := q.Get("expires"), q.Get("sign")
	if exp == "" || sig == "" {
		return fmt.Errorf("%w: play URL must be signed (expires, sign)", ErrForbidden)
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad expires", ErrForbidden)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	if now().Unix() > e {
		return fmt.Errorf("%w: play URL expired", ErrForbidden)
	}
	m := hmac.New(sha256.New, []byte(c.SignKey))
	m.Write([]byte(room))
	m.Write([]byte{':'})
	m.Write([]byte(exp))
	want := m.Sum(nil)
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, want) {
		return fmt.Errorf("%w: bad signature", ErrForbidden)
	}
	return nil
}

// Event is the JSON body of every webhook.
type Event struct {
	Action     string `json:"action"`          // on_publish, on_unpublish, on_play
	Room       string `json:"room"`            // room id
	Stream     string `json:"stream"`          // "live/ROOM", livego-style app/name
	Key        string `json:"key,omitempty"`   // stream key (on_publish, on_unpublish only)
	Protocol   string `json:"protocol"`        // rtmp, flv or hls
	RemoteAddr string `json:"remote_addr"`     // client ip:port
	Query      string `json:"query,omitempty"` // raw query of the play/publish URL
	Time       int64  `json:"time"`            // unix seconds
}

func (c *Checker) timeout() time.Duration {
	if c.HookTimeout > 0 {
		return c.HookTimeout
	}
	return 5 * time.Second
}

func (c *Checker) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return http.DefaultClient
}

func (c *Checker) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}

// OnPublish calls the on_publish hook; a non-2xx answer or a failure
// refuses (the error wraps ErrForbidden).
func (c *Checker) OnPublish(ctx context.Context, ev Event) error {
	if c == nil || c.HookPublish == "" {
		return nil
	}
	ev.Action = "on_publish"
	return c.call(ctx, c.HookPublish, ev)
}

// OnPlay calls the on_play hook; a non-2xx answer or a failure refuses.
func (c *Checker) OnPlay(ctx context.Context, ev Event) error {
	if c == nil || c.HookPlay == "" {
		return nil
	}
	ev.Action = "on_play"
	return c.call(ctx, c.HookPlay, ev)
}

// OnUnpublish sends the on_unpublish hook in the background; Wait waits
// for outstanding calls.
func (c *Checker) OnUnpublish(ev Event) {
	if c == nil || c.HookUnpublish == "" {
		return
	}
	ev.Action = "on_unpublish"
	c.background(func() error { return c.call(context.Background(), c.HookUnpublish, ev) }, ev.Action, ev.Room)
}

// background runs an informative hook call; Wait waits for it.
func (c *Checker) background(call func() error, action, room string) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := call(); err != nil {
			c.log().Warn(action+" hook failed", "room", room, "err", err)
		}
	}()
}

// Wait blocks until background hook calls have finished (each is bounded
// by HookTimeout).
func (c *Checker) Wait() {
	if c != nil {
		c.wg.Wait()
	}
}

func (c *Checker) call(ctx context.Context, hook string, ev Event) error {
	if ev.Time == 0 {
		now := time.Now
		if c.Now != nil {
			now = c.Now
		}
		ev.Time = now().Unix()
	}
	return c.post(ctx, hook, ev.Action, ev)
}

// RecordDone is the body of the on_record_done hook (issue 10).
type RecordDone struct {
	Action     string `json:"action"`      // on_record_done
	Room       string `json:"room"`        // room id
	Session    string `json:"session"`     // session id
	Path       string `json:"path"`        // the recording's directory on the server
	DurationMS int64  `json:"duration_ms"` // recorded length
}

// OnRecordDone sends the on_record_done hook in the background (informative,
// like on_unpublish); Wait waits for it.
func (c *Checker) OnRecordDone(ev RecordDone) {
	if c == nil || c.HookRecordDone == "" {
		return
	}
	ev.Action = "on_record_done"
	c.background(func() error { return c.post(context.Background(), c.HookRecordDone, ev.Action, ev) }, ev.Action, ev.Room)
}

// post sends v as JSON to hook; a failure or non-2xx answer is an error
// wrapping ErrForbidden.
func (c *Checker) post(ctx context.Context, hook, action string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s hook: %w", action, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %s hook: %v", ErrForbidden, action, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client().Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s hook: %v", ErrForbidden, action, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w: %s hook answered %d", ErrForbidden, action, resp.StatusCode)
	}
	return nil
}
