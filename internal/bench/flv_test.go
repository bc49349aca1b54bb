package bench

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeFLV serves testdata/test.flv as a live HTTP-FLV stream: a new viewer
// gets the header, metadata and sequence headers, then the GOP from the
// latest keyframe at once, then the rest in real time, looping.
type fakeFLV struct {
	srv   *httptest.Server
	head  []byte
	tags  []flvTag
	start time.Time
	dur   uint32 // ms of media in the file
	skip  func(tg flvTag, first bool) bool
	wg    sync.WaitGroup
	stop  chan struct{}
}

func newFakeFLV(t *testing.T, skip func(tg flvTag, first bool) bool) *fakeFLV {
	f := &fakeFLV{start: time.Now(), skip: skip, stop: make(chan struct{})}
	f.head, f.tags = splitFLV(t, readTestFLV(t))
	f.dur = f.tags[len(f.tags)-1].ts + 40
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live/{name}", f.serve)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(f.stop)
		f.srv.CloseClientConnections()
		f.srv.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeFLV) serve(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != "r1.flv" {
		http.NotFound(w, r)
		return
	}
	f.wg.Add(1)
	defer f.wg.Done()
	w.Header().Set("Content-Type", "video/x-flv")
	fl := w.(http.Flusher)
	out := bytes.Clone(f.head)
	// Metadata and sequence headers first.
	for _, tg := range f.tags {
		if tg.typ == 18 || tg.seq {
			if f.skip == nil || !f.skip(tg, true) {
				out = append(out, tg.raw...)
			}
		}
	}
	// Then the current GOP, at once.
	pos := uint32(time.Since(f.start).Milliseconds()) % f.dur
	k := 0
	for i, tg := range f.tags {
		if tg.key && tg.ts <= pos {
			k = i
		}
	}
	base := time.Now().Add(-time.Duration(pos) * time.Millisecond)
	var loop uint32
	first := true
	for i := k; ; i++ {
		if i == len(f.tags) {
			i, loop = 0, loop+1
		}
		tg := f.tags[i]
		if tg.typ == 18 || tg.seq {
			continue
		}
		ts := tg.ts + loop*f.dur
		if due := base.Add(time.Duration(ts) * time.Millisecond); time.Until(due) > 0 {
			if len(out) > 0 {
				if _, err := w.Write(out); err != nil {
					return
				}
				fl.Flush()
				out = out[:0]
			}
			select {
			case <-r.Context().Done():
				return
			case <-f.stop:
				return
			case <-time.After(max(time.Until(due), 40*time.Millisecond)):
			}
		}
		if f.skip != nil && f.skip(tg, first) {
			continue
		}
		first = false
		raw := bytes.Clone(tg.raw)
		raw[4], raw[5], raw[6], raw[7] = byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24)
		out = append(out, raw...)
	}
}

func TestBenchFLV(t *testing.T) {
	f := newFakeFLV(t, nil)
	rep, err := runBench(t, nil, "flv", "--url", f.srv.URL+"/live/r1.flv", "--viewers", "6", "--ramp", "0",
		"--duration", "1s", "--settle", "200ms", "--bitrate", "1", "--pid", itoa(osPid()))
	if err != nil {
		t.Fatalf("err %v, violations %v", err, rep.Violations)
	}
	fr := rep.FLV
	if fr == nil || fr.Connected != 6 || fr.Failed != 0 || fr.NoKeyframe != 0 || len(fr.StartProblems) != 0 || fr.EndedEarly != 0 {
		t.Fatalf("report %+v", fr)
	}
	if fr.FirstKeyframe.Count != 6 || fr.FirstByte.Count != 6 || fr.ViewerKbps.N != 6 || fr.ReceivedMiB <= 0 {
		t.Fatalf("figures %+v", fr)
	}
	if rep.Server == nil || rep.Server.PID != osPid() || rep.Server.RSSEndKiB == 0 {
		t.Fatalf("server %+v", rep.Server)
	}
	if !rep.OK || rep.Scenario != "flv" {
		t.Fatalf("report %+v", rep)
	}
}

func TestBenchFLVViolations(t *testing.T) {
	// No sequence headers, and the first frame sent is not a keyframe.
	f := newFakeFLV(t, func(tg flvTag, first bool) bool {
		return tg.typ == 9 && (tg.seq || first && tg.key)
	})
	rep, err := runBench(t, nil, "flv", "--url", f.srv.URL+"/live/r1.flv", "--viewers", "3", "--ramp", "0",
		"--duration", "300ms", "--settle", "0s", "--bitrate", "1")
	if !errors.Is(err, ErrChecksFailed) {
		t.Fatalf("want failed checks, got %v", err)
	}
	sp := rep.FLV.StartProblems
	if sp["first video tag not a sequence header"] != 3 {
		t.Fatalf("start problems %v", sp)
	}
	if !strings.Contains(strings.Join(rep.Violations, ";"), "sequence header") {
		t.Fatalf("violations %v", rep.Violations)
	}
}

func TestBenchFLVNotFound(t *testing.T) {
	f := newFakeFLV(t, nil)
	// --url without .flv: the bench builds /live/{room}.flv.
	rep, err := runBench(t, nil, "flv", "--url", f.srv.URL, "--room", "nope", "--viewers", "2", "--ramp", "0",
		"--duration", "100ms", "--settle", "0s")
	if !errors.Is(err, ErrChecksFailed) || rep.FLV.Failed != 2 || rep.FLV.Errors["status 404"] != 2 {
		t.Fatalf("err %v report %+v", err, rep.FLV)
	}
	if !strings.HasSuffix(rep.FLV.URL, "/live/nope.flv") {
		t.Fatalf("url %s", rep.FLV.URL)
	}
}
