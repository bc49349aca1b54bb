package livego_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/errs"
	"roomcast/internal/livego"
	"roomcast/internal/media"
	"roomcast/internal/room"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The composition root passes *room.Registry and *media.Server.
var (
	_ livego.Rooms   = (*room.Registry)(nil)
	_ livego.Streams = (*media.Server)(nil)
	_ media.Rooms    = (*room.Registry)(nil)
)

// fakeRooms is a registry made of function fields over a map.
type fakeRooms struct {
	EnsureFunc   func(ctx context.Context, id string) (room.Room, error)
	ResetKeyFunc func(ctx context.Context, id string) (string, error)
	DeleteFunc   func(ctx context.Context, id string) error
}

func (f *fakeRooms) Ensure(ctx context.Context, id string) (room.Room, error) {
	return f.EnsureFunc(ctx, id)
}
func (f *fakeRooms) ResetKey(ctx context.Context, id string) (string, error) {
	return f.ResetKeyFunc(ctx, id)
}
func (f *fakeRooms) Delete(ctx context.Context, id string) error { return f.DeleteFunc(ctx, id) }

func newRooms() (*fakeRooms, map[string]string) {
	keys := map[string]string{}
	n := 0
	return &fakeRooms{
		EnsureFunc: func(_ context.Context, id string) (room.Room, error) {
			if !room.ValidID(id) {
				return room.Room{}, errs.New(errs.BadRequest, "bad room name")
			}
			if _, ok := keys[id]; !ok {
				n++
				keys[id] = "rk_" + id + "_" + string(rune('0'+n))
			}
			return room.Room{ID: id, StreamKey: keys[id]}, nil
		},
		ResetKeyFunc: func(_ context.Context, id string) (string, error) {
			n++
			keys[id] = "rk_" + id + "_" + string(rune('0'+n))
			return keys[id], nil
		},
		DeleteFunc: func(_ context.Context, id string) error {
			if _, ok := keys[id]; !ok {
				return errs.New(errs.RoomNotFound, "no such room")
			}
			delete(keys, id)
			return nil
		},
	}, keys
}

type fakeStreams struct {
	sessions []media.Session
	kicked   []string
}

func (f *fakeStreams) Sessions() []media.Session { return f.sessions }
func (f *fakeStreams) Kick(room string) bool     { f.kicked = append(f.kicked, room); return true }

type reply struct {
	Status int             `json:"status"`
	Data   json.RawMessage `json:"data"`
	Error  *struct {
		Code string `json:"code"`
	} `json:"error"`
}

func call(t *testing.T, h http.Handler, remote, target string, hdr ...string) (int, reply) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var r reply
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("%s: body %q: %v", target, rec.Body.String(), err)
	}
	if r.Status != rec.Code {
		t.Fatalf("%s: status field %d != HTTP %d", target, r.Status, rec.Code)
	}
	return rec.Code, r
}

func str(t *testing.T, raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("data %s is not a string", raw)
	}
	return s
}

func TestControlAPI(t *testing.T) {
	rooms, keys := newRooms()
	streams := &fakeStreams{}
	h := livego.New(livego.Config{}, rooms, streams, nil)
	const local = "127.0.0.1:5555"

	code, r := call(t, h, local, "/control/get?room=movie")
	key := str(t, r.Data)
	if code != 200 || key == "" || keys["movie"] != key {
		t.Fatalf("get: %d %s", code, r.Data)
	}
	if _, r := call(t, h, local, "/control/get?room=movie"); str(t, r.Data) != key {
		t.Fatal("get must return the same key")
	}
	code, r = call(t, h, local, "/control/reset?room=movie")
	if code != 200 || str(t, r.Data) == key || keys["movie"] != str(t, r.Data) {
		t.Fatalf("reset: %d %s", code, r.Data)
	}
	code, r = call(t, h, local, "/control/delete?room=movie")
	if code != 200 || str(t, r.Data) != "ok" || len(streams.kicked) != 1 {
		t.Fatalf("delete: %d %s %v", code, r.Data, streams.kicked)
	}
	if code, r := call(t, h, local, "/control/delete?room=movie"); code != 404 || r.Error.Code != "room_not_found" {
		t.Fatalf("delete again: %d %+v", code, r)
	}
	if code, _ := call(t, h, local, "/control/get"); code != 400 {
		t.Fatalf("get without room: %d", code)
	}
	if code, _ := call(t, h, local, "/control/get?room=../x"); code != 400 {
		t.Fatalf("bad name: %d", code)
	}
	if code, _ := call(t, h, local, "/control/nope"); code != 404 {
		t.Fatalf("unknown: %d", code)
	}
}

func TestAccess(t *testing.T) {
	rooms, _ := newRooms()
	open := livego.New(livego.Config{}, rooms, nil, nil)
	if code, r := call(t, open, "192.0.2.7:1000", "/control/get?room=a"); code != 403 || r.Error.Code != "forbidden" {
		t.Fatalf("remote without admin key configured: %d", code)
	}
	if code, _ := call(t, open, "[::1]:1000", "/control/get?room=a"); code != 200 {
		t.Fatalf("ipv6 loopback: %d", code)
	}
	locked := livego.New(livego.Config{AdminKey: "adm"}, rooms, nil, nil)
	for _, c := range []struct {
		target string
		hdr    []string
		want   int
	}{
		{"/control/get?room=a", nil, 403},
		{"/control/get?room=a&key=wrong", nil, 403},
		{"/control/get?room=a&key=adm", nil, 200},
		{"/control/get?room=a", []string{"Authorization", "Bearer adm"}, 200},
		{"/control/get?room=a", []string{"Authorization", "Bearer nope"}, 403},
	} {
		// With a key configured, loopback is not enough.
		if code, _ := call(t, locked, "127.0.0.1:1", c.target, c.hdr...); code != c.want {
			t.Errorf("%s %v: %d, want %d", c.target, c.hdr, code, c.want)
		}
	}
}

func TestLiveStat(t *testing.T) {
	rooms, _ := newRooms()
	since := time.Now().Add(-10 * time.Second)
	streams := &fakeStreams{sessions: []media.Session{
		{Room: "movie", Publisher: true, Protocol: "rtmp", Remote: "1.1.1.1:1", ID: 3, Since: since, VideoBytes: 1_000_000, AudioBytes: 100_000},
		{Room: "movie", Protocol: "flv", Remote: "2.2.2.2:2", ID: 3, Since: since, VideoBytes: 500},
		{Room: "other", Publisher: true, Protocol: "rtmp", ID: 4, Since: since},
	}}
	h := livego.New(livego.Config{}, rooms, streams, nil)
	req := httptest.NewRequest(http.MethodGet, "http://example.com:8080/stat/livestat", nil)
	req.RemoteAddr = "127.0.0.1:9"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var res struct {
		Status int             `json:"status"`
		Data   livego.LiveStat `json:"data"`
		Raw    map[string]any  `json:"-"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.Status != 200 {
		t.Fatalf("%s %v", rec.Body, err)
	}
	if len(res.Data.Publishers) != 2 || len(res.Data.Players) != 1 {
		t.Fatalf("%+v", res.Data)
	}
	p := res.Data.Publishers[0]
	if p.Key != "live/movie" || p.URL != "rtmp://example.com:1935/live/movie" || p.StreamID != 3 || p.VideoTotalBytes != 1_000_000 || p.VideoSpeed < 700 || p.VideoSpeed > 900 {
		t.Fatalf("publisher %+v", p)
	}
	if pl := res.Data.Players[0]; pl.URL != "http://example.com:8080/live/movie.flv" || pl.Protocol != "flv" {
		t.Fatalf("player %+v", pl)
	}
	for _, k := range []string{`"publishers"`, `"players"`, `"video_total_bytes"`, `"video_speed"`, `"audio_total_bytes"`, `"audio_speed"`, `"stream_id"`, `"url"`, `"key"`} {
		if !strings.Contains(rec.Body.String(), k) {
			t.Errorf("livestat lacks %s", k)
		}
	}
	// Filter by room.
	req = httptest.NewRequest(http.MethodGet, "/stat/livestat?room=other", nil)
	req.RemoteAddr = "127.0.0.1:9"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), "live/other") || strings.Contains(rec.Body.String(), "live/movie") {
		t.Fatalf("room filter: %s", rec.Body)
	}
	// Empty lists are [] (livego clients iterate them).
	empty := livego.New(livego.Config{}, rooms, nil, nil)
	req = httptest.NewRequest(http.MethodGet, "/stat/livestat", nil)
	req.RemoteAddr = "127.0.0.1:9"
	rec = httptest.NewRecorder()
	empty.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"publishers":[]`) {
		t.Fatalf("empty: %s", rec.Body)
	}
}
