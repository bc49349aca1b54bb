package record

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/media/access"
	"roomcast/internal/media/hub"
	"roomcast/internal/redistest"
	"roomcast/internal/store"
	"roomcast/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
}

// rooms is the hub's room registry for the test: one room, key "k".
type rooms struct{}

func (rooms) ByStreamKey(context.Context, string) (string, error) { return "r1", nil }
func (rooms) Exists(context.Context, string) (bool, error)        { return true, nil }
func (rooms) SetLive(context.Context, string, bool) error         { return nil }

// Synthetic H.264 parameter sets (320x240 baseline, from x264).
var (
	sps = []byte{0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x23, 0xc5, 0x0a, 0xa8}
	pps = []byte{0x68, 0xce, 0x0f, 0xc8}
)

// publishFor publishes d of 25 fps video (a key frame every 10 frames) into
// r1 as fast as the hub takes it, and ends the publish.
func publishFor(t *testing.T, m *hub.Manager, d time.Duration) {
	t.Helper()
	p, err := m.Publish(context.Background(), "r1", "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(hub.Tracks{Video: &hub.VideoTrack{Codec: "h264", SPS: sps, PPS: pps}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; time.Duration(i)*40*time.Millisecond <= d; i++ {
		ts := time.Duration(i) * 40 * time.Millisecond
		nalu := []byte{0x41, 1, 2, 3, 4, 5, 6, 7}
		if i%10 == 0 {
			nalu = []byte{0x65, 1, 2, 3, 4, 5, 6, 7}
		}
		if err := p.WriteVideo(ts, ts, [][]byte{nalu}); err != nil {
			t.Fatal(err)
		}
	}
	// The recorder reads every frame before the publish ends.
	testutil.WaitFor(t, "the recorder to catch up", 10*time.Second, func() bool {
		return p.Stream().LastDTS() >= d-40*time.Millisecond
	})
	p.Close()
}

func setup(t *testing.T, gap time.Duration) (*Recorder, *hub.Manager) {
	t.Helper()
	st, err := store.OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := New(context.Background(), Config{Enabled: true, Dir: t.TempDir(), SessionGap: gap, Segment: 400 * time.Millisecond}, st, &access.Checker{}, log)
	if err != nil {
		t.Fatal(err)
	}
	m := hub.NewManager(hub.Config{GOPCache: true}, rooms{}, log, nil)
	m.AddObserver(r)
	t.Cleanup(func() { m.Close(); r.Close() })
	return r, m
}

func sessions(t *testing.T, r *Recorder) []Session {
	t.Helper()
	ss, err := r.Sessions(context.Background(), "r1", 10)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// A reconnect within the gap continues the session (one clock, one
// recording with a discontinuity); after the gap a new session starts;
// recording off leaves no video; retention deletes old recordings.
func TestSessionsAndSegments(t *testing.T) {
	r, m := setup(t, 2*time.Second)
	ctx := context.Background()
	publishFor(t, m, 2*time.Second)
	testutil.WaitFor(t, "the session to end", 10*time.Second, func() bool { ss := sessions(t, r); return len(ss) == 1 && !ss[0].Live })
	first := sessions(t, r)[0]
	if first.DurationMS < 1900 || first.DurationMS > 2100 || !first.Recorded {
		t.Fatalf("first publish: %+v", first)
	}
	sid, pos, ok := r.Position(ctx, "r1") // within the grace after the end
	if !ok || sid != first.ID || pos != first.DurationMS {
		t.Fatalf("position after the end: %s %d %v", sid, pos, ok)
	}

	publishFor(t, m, time.Second) // back within the gap
	testutil.WaitFor(t, "the session to end again", 10*time.Second, func() bool {
		ss := sessions(t, r)
		return len(ss) == 1 && !ss[0].Live && ss[0].DurationMS > first.DurationMS
	})
	s := sessions(t, r)[0]
	if s.ID != first.ID || s.DurationMS < first.DurationMS+900 || s.DurationMS > first.DurationMS+1100 {
		t.Fatalf("continued session: %+v (first %+v)", s, first)
	}
	segs, err := readManifest(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	disc := 0
	for i, e := range segs {
		total += e.DurMS
		if e.Disc {
			disc++
			if e.Init != 2 || i == 0 {
				t.Fatalf("discontinuity at %d: %+v", i, e)
			}
		}
		if i > 0 && e.StartMS < segs[i-1].StartMS+segs[i-1].DurMS-1 {
			t.Fatalf("segment %d starts at %d, before the previous one ends", i, e.StartMS)
		}
	}
	if disc != 1 || total < s.DurationMS-100 || total > s.DurationMS+100 {
		t.Fatalf("%d discontinuities, segments last %d ms, the session %d: %+v", disc, total, s.DurationMS, segs)
	}
	pl := string(Playlist(segs, false, "expires=1&sign=ab"))
	for _, want := range []string{"#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-2.mp4?expires=1&sign=ab\"", "#EXT-X-ENDLIST", "seg-1.m4s?expires=1&sign=ab"} {
		if !strings.Contains(pl, want) {
			t.Fatalf("playlist lacks %q:\n%s", want, pl)
		}
	}

	// After the gap: a new session, and recording off leaves no video.
	testutil.WaitFor(t, "the gap to pass", 10*time.Second, func() bool {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return r.rooms["r1"] == nil
	})
	if err := r.SetEnabled(ctx, "r1", false); err != nil {
		t.Fatal(err)
	}
	publishFor(t, m, time.Second)
	testutil.WaitFor(t, "a second session", 10*time.Second, func() bool { ss := sessions(t, r); return len(ss) == 2 && !ss[0].Live })
	off := sessions(t, r)[0]
	if off.ID == s.ID || off.Recorded || off.VOD != "" {
		t.Fatalf("unrecorded session: %+v", off)
	}
	if _, err := os.Stat(filepath.Join(r.cfg.Dir, "r1", off.ID)); !os.IsNotExist(err) {
		t.Fatalf("unrecorded session has a directory: %v", err)
	}

	// Retention.
	r.cfg.Retention = time.Millisecond
	r.sweepOnce()
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Fatalf("retention kept %s: %v", s.dir, err)
	}
	if got, _ := r.Session(ctx, s.ID); got.Recorded || got.DurationMS != s.DurationMS {
		t.Fatalf("after retention: %+v", got)
	}
}

func TestVODHelpers(t *testing.T) {
	for f, ok := range map[string]bool{"init-1.mp4": true, "seg-12.m4s": true, "seg-0.m4s": false, "seg-01.m4s": false,
		"segments.jsonl": false, "init-x.mp4": false, "../seg-1.m4s": false} {
		if validFile(f) != ok {
			t.Errorf("validFile(%q) = %v", f, !ok)
		}
	}
	for h, want := range map[string]int64{"bytes=0-99": 0, "bytes=500-": 500, "bytes=-100": -1, "items=1-2": -1, "bytes=7-9, 20-30": 7} {
		if got := rangeStart(h); got != want {
			t.Errorf("rangeStart(%q) = %d, want %d", h, got, want)
		}
	}
	for id, ok := range map[string]bool{"s0123abcd": true, "S0123": false, "s": false, "s../x": false, "sxyz": false} {
		if ValidSessionID(id) != ok {
			t.Errorf("ValidSessionID(%q) = %v", id, !ok)
		}
	}
}

// The session table works the same on every SQL dialect.
func TestSessionDB(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) *store.Store{
		"sqlite": func(t *testing.T) *store.Store {
			st, err := store.OpenSQLite(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"postgres": func(t *testing.T) *store.Store { return openDSN(t, redistest.Postgres(t)) },
		"mysql":    func(t *testing.T) *store.Store { return openDSN(t, redistest.MySQL(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			defer st.Close()
			ctx := context.Background()
			if err := st.Migrate(ctx, sessionSchema...); err != nil {
				t.Fatal(err)
			}
			if err := st.Migrate(ctx, sessionSchema...); err != nil { // idempotent
				t.Fatal(err)
			}
			db := sessionDB{st}
			start := time.UnixMilli(time.Now().UnixMilli())
			for i, id := range []string{"s01", "s02"} {
				s := &Session{ID: id, Room: "r", StartedAt: start.Add(time.Duration(i) * time.Second), dir: "/x/" + id, clockMS: start.UnixMilli()}
				if err := db.insert(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.progress(ctx, "s01", 1500, true); err != nil {
				t.Fatal(err)
			}
			if err := db.end(ctx, "s01", start.Add(2*time.Second), 2000); err != nil {
				t.Fatal(err)
			}
			ss, err := db.list(ctx, "r", 10)
			if err != nil || len(ss) != 2 || ss[0].ID != "s02" || !ss[0].Live || ss[1].Live || !ss[1].Recorded || ss[1].DurationMS != 2000 {
				t.Fatalf("list: %+v %v", ss, err)
			}
			if open, err := db.open(ctx); err != nil || len(open) != 1 || open[0].ID != "s02" || open[0].clockMS != start.UnixMilli() {
				t.Fatalf("open: %+v %v", open, err)
			}
			if old, err := db.expired(ctx, start.Add(time.Hour)); err != nil || len(old) != 1 || old[0].ID != "s01" {
				t.Fatalf("expired: %+v %v", old, err)
			}
			if err := db.unrecord(ctx, "s01"); err != nil {
				t.Fatal(err)
			}
			if s, err := db.get(ctx, "s01"); err != nil || s.Recorded || s.VOD != "" || s.EndedAt == nil {
				t.Fatalf("get: %+v %v", s, err)
			}
			if _, err := db.get(ctx, "s99"); err != ErrNotFound {
				t.Fatalf("unknown: %v", err)
			}
		})
	}
}

func openDSN(t *testing.T, dsn string) *store.Store {
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
