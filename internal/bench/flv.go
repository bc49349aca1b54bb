package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// flvScenario is `bench flv`: N HTTP-FLV viewers of a stream.
type flvScenario struct {
	common
	noDrain
	viewers    int
	rampRate   int
	bitrate    float64
	stallRatio float64
	readBuf    int
	settleFor  time.Duration

	client    *http.Client
	tr        *http.Transport
	vs        []*flvViewer
	stopping  atomic.Bool
	connected atomic.Int64
	failed    atomic.Int64
	ended     atomic.Int64
	ttfb      Hist // request → response headers
	ttfk      Hist // request → first keyframe
	mu        sync.Mutex
	errs      errCounter // guarded by mu
	wg        sync.WaitGroup
	answered  sync.WaitGroup // viewers whose request is not answered (or failed) yet
	prevBytes int64          // for the progress line
}

// FLVReport covers the HTTP-FLV viewers.
type FLVReport struct {
	URL           string            `json:"url"`
	Viewers       int               `json:"viewers"`
	Connected     int               `json:"connected"`
	Failed        int               `json:"failed"`
	Errors        map[string]uint64 `json:"errors,omitempty"` // failed requests and streams that ended
	EndedEarly    int               `json:"ended_early"`      // streams that ended before the run did
	FirstByte     Latency           `json:"first_byte"`       // request → response headers
	FirstKeyframe Latency           `json:"first_keyframe"`   // request → first keyframe tag
	NoKeyframe    int               `json:"no_keyframe"`      // viewers that never got one
	StreamKbps    float64           `json:"stream_kbps"`      // the stream's bitrate
	StreamSource  string            `json:"stream_kbps_source"`
	ViewerKbps    Dist              `json:"viewer_kbps"` // each viewer's received bitrate over the window
	MediaSpeed    Dist              `json:"media_speed"` // media seconds received per wall second
	StallRatio    float64           `json:"stall_ratio"`
	Stalled       int               `json:"stalled"` // viewers below stall_ratio × stream_kbps
	StartProblems map[string]int    `json:"start_violations"`
	TSBack        int               `json:"ts_regression_viewers"`
	AudioNoSeqHdr int               `json:"audio_without_seq_header"`
	ReceivedMiB   float64           `json:"received_mib"`
}

// Dist summarizes one figure over the viewers.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min"`
	P10  float64 `json:"p10"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func dist(v []float64) Dist {
	if len(v) == 0 {
		return Dist{}
	}
	slices.Sort(v)
	at := func(q float64) float64 { return round3(v[int(q*float64(len(v)-1))]) }
	var sum float64
	for _, x := range v {
		sum += x
	}
	return Dist{N: len(v), Min: round3(v[0]), P10: at(0.1), P50: at(0.5), P90: at(0.9), Max: round3(v[len(v)-1]),
		Mean: round3(sum / float64(len(v)))}
}

type flvViewer struct {
	bytes   atomic.Int64
	mediaMs atomic.Int64
	up      atomic.Bool // response received, reading
	alive   atomic.Bool
	b0, b1  int64
	m0, m1  int64
	inWin   bool
	st      flvStats
	ended   string
}

func (s *flvScenario) base() *common { return &s.common }

func (s *flvScenario) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.viewers, "viewers", 10, "concurrent HTTP-FLV viewers")
	fs.IntVar(&s.viewers, "conns", 10, "alias of --viewers")
	fs.IntVar(&s.rampRate, "ramp", 200, "viewers started per second (0 = all at once)")
	fs.Float64Var(&s.bitrate, "bitrate", 0, "the stream's bitrate in kbit/s (0 = measure it from the media)")
	fs.Float64Var(&s.stallRatio, "stall-ratio", 0.9, "a viewer below this share of the stream bitrate is stalled")
	fs.IntVar(&s.readBuf, "read-buffer", 32<<10, "read buffer per viewer (bytes)")
	fs.DurationVar(&s.settleFor, "settle", time.Second, "wait after the ramp before the window starts")
}

func (s *flvScenario) check() (int, error) {
	switch {
	case s.viewers < 1:
		return 0, errors.New("bench flv: --viewers must be at least 1")
	case s.stallRatio <= 0 || s.stallRatio > 1 || s.bitrate < 0:
		return 0, errors.New("bench flv: --stall-ratio must be in (0,1] and --bitrate ≥ 0")
	case s.readBuf < 1024:
		return 0, errors.New("bench flv: --read-buffer must be at least 1024")
	}
	if !strings.HasSuffix(strings.SplitN(s.url, "?", 2)[0], ".flv") {
		s.url = strings.TrimSuffix(s.url, "/") + "/live/" + url.PathEscape(s.room) + ".flv"
	}
	return s.viewers, nil
}

func (s *flvScenario) setup(*runner) error {
	s.tr = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: s.timeout}).DialContext,
		DisableCompression:    true,
		ResponseHeaderTimeout: s.timeout,
		MaxIdleConnsPerHost:   -1,
		ReadBufferSize:        s.readBuf,
	}
	s.client = &http.Client{Transport: s.tr}
	s.vs = make([]*flvViewer, s.viewers)
	for i := range s.vs {
		s.vs[i] = &flvViewer{}
	}
	return nil
}

func (s *flvScenario) estimate() time.Duration {
	return rampTime(s.viewers, s.rampRate) + s.settleFor + s.duration
}

func (s *flvScenario) status(r *runner, dt time.Duration) string {
	var b int64
	for _, v := range s.vs {
		b += v.bytes.Load()
	}
	line := fmt.Sprintf("%-6s viewers %d/%d  %.1f Mbit/s  first keyframe p99 %s  errs %d",
		r.phase.Load(), s.connected.Load(), s.viewers, float64(b-s.prevBytes)*8/1e6/dt.Seconds(),
		ms(float64(s.ttfk.Quantile(0.99))/1e6), s.failed.Load()+s.ended.Load())
	s.prevBytes = b
	return line
}

func (s *flvScenario) fail(label string) {
	s.mu.Lock()
	s.errs.add(label, 1)
	s.mu.Unlock()
}

// ramp starts the viewers at --ramp per second and waits until each has
// its answer (the response headers, or a failure: bounded by --timeout), so
// that the window measures every viewer that got the stream.
func (s *flvScenario) ramp(r *runner) {
	r.rampUp(s.viewers, s.rampRate, func(i int) {
		s.wg.Add(1)
		s.answered.Add(1)
		go s.view(r.runCtx, s.vs[i])
	}, s.answered.Wait)
	r.settle(s.settleFor)
}

// view is one viewer: it requests the stream and reads it until the run
// stops or the stream ends.
func (s *flvScenario) view(ctx context.Context, v *flvViewer) {
	defer s.wg.Done()
	t0 := time.Now()
	resp, err := s.get(ctx)
	s.answered.Done()
	if err != nil {
		if !s.stopping.Load() {
			s.failed.Add(1)
			s.fail(errLabel(err))
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		s.failed.Add(1)
		s.fail("status " + strconv.Itoa(resp.StatusCode))
		return
	}
	s.ttfb.Record(time.Since(t0))
	s.connected.Add(1)
	v.up.Store(true)
	v.alive.Store(true)
	defer v.alive.Store(false)
	kf := false
	err = readFLV(resp.Body, s.readBuf, &v.bytes, &v.st, func() {
		if v.st.KeyframeSeen {
			if !kf {
				kf = true
				s.ttfk.Record(time.Since(t0))
			}
			v.mediaMs.Store(int64(v.st.TSMax - v.st.TSFirstKey))
		}
	})
	if !s.stopping.Load() {
		v.ended = "stream ended: " + errLabel(err)
		s.ended.Add(1)
	}
}

// get requests the stream; a failed request's error is unwrapped from
// *url.Error for its label.
func (s *flvScenario) get(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return resp, err
}

// measure reads every viewer's bytes and media time at the start and the
// end of the window.
func (s *flvScenario) measure(r *runner) {
	r.runWindow(func(context.Context) {
		for _, v := range s.vs {
			v.inWin = v.alive.Load()
			v.b0, v.m0 = v.bytes.Load(), v.mediaMs.Load()
		}
	})
	r.closeWindow()
	for _, v := range s.vs {
		v.b1, v.m1 = v.bytes.Load(), v.mediaMs.Load()
	}
	r.rep.Server = r.watch.finish(r.window)
}

func (s *flvScenario) stop(r *runner) {
	s.stopping.Store(true)
	r.cancel()
	s.wg.Wait()
	s.tr.CloseIdleConnections()
}

func (s *flvScenario) report(r *runner) {
	rep := r.rep
	fr := &FLVReport{URL: s.url, Viewers: s.viewers, Connected: int(s.connected.Load()), Failed: int(s.failed.Load()),
		EndedEarly: int(s.ended.Load()), FirstByte: s.ttfb.Summary(), FirstKeyframe: s.ttfk.Summary(),
		StallRatio: s.stallRatio, StartProblems: map[string]int{}}
	kbps, contentKbps := s.viewerFigures(fr, r.window)
	fr.StreamKbps, fr.StreamSource = s.bitrate, "flag"
	if s.bitrate == 0 {
		fr.StreamKbps, fr.StreamSource = round1(contentKbps), "measured (median content bitrate)"
	}
	if fr.StreamKbps > 0 {
		for _, k := range kbps {
			if k < s.stallRatio*fr.StreamKbps {
				fr.Stalled++
			}
		}
	}
	s.mu.Lock()
	fr.Errors = s.errs.m
	s.mu.Unlock()
	rep.FLV = fr
	if sv := rep.Server; sv != nil && sv.MeasurementProblem == "" && fr.Connected > 0 {
		sv.CPUPercentPerView = round3(sv.CPUPercent / float64(fr.Connected))
		sv.KiBPerViewer = round1(float64(sv.RSSEndKiB-sv.RSSBaseKiB) / float64(fr.Connected))
	}
	r.violation(uint64(fr.Failed), "failed viewer")
	if !rep.Interrupted {
		r.violation(uint64(fr.EndedEarly), "stream%s that ended early")
		r.violation(uint64(fr.Stalled), "stalled viewer")
		r.violation(uint64(fr.NoKeyframe), "viewer%s without a keyframe")
	}
	for _, k := range sortedKeys(fr.StartProblems) {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%s: %d viewers", k, fr.StartProblems[k]))
	}
}

// viewerFigures adds up the viewers' streams into fr and returns each
// viewer's bitrate over the window and their median content bitrate.
func (s *flvScenario) viewerFigures(fr *FLVReport, window time.Duration) (kbps []float64, contentKbps float64) {
	var content, speed []float64
	var total int64
	for _, v := range s.vs {
		total += v.bytes.Load()
		if v.ended != "" {
			s.fail(v.ended)
		}
		if !v.up.Load() {
			continue
		}
		if !v.st.KeyframeSeen {
			fr.NoKeyframe++
		}
		for _, p := range v.st.violations() {
			fr.StartProblems[p]++
		}
		if v.st.TSBack > 0 {
			fr.TSBack++
		}
		if v.st.FirstAudioSeen && !v.st.FirstAudioSeqHdr {
			fr.AudioNoSeqHdr++
		}
		if c := v.st.contentKbps(); c > 0 {
			content = append(content, c)
		}
		if v.inWin && window > 0 {
			kbps = append(kbps, float64(v.b1-v.b0)*8/1000/window.Seconds())
			speed = append(speed, float64(v.m1-v.m0)/float64(window.Milliseconds()))
		}
	}
	fr.ReceivedMiB = round1(float64(total) / (1 << 20))
	fr.ViewerKbps = dist(slices.Clone(kbps))
	fr.MediaSpeed = dist(speed)
	return kbps, dist(content).P50
}
