package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"roomcast/internal/media/flvtag"
)

// flvScenario is `bench flv`: N HTTP-FLV viewers of a stream, and
// `bench rtmp` (rtmp set): N RTMP players of it.
type flvScenario struct {
	common
	noDrain
	rtmp       bool
	playURL    string // rtmp: the stream's rtmp:// URL
	pubFile    string // --publish: an FLV file the bench publishes itself
	pubURL     string
	pubLead    time.Duration
	viewers    int
	rampRate   int
	bitrate    float64
	stallRatio float64
	readBuf    int
	settleFor  time.Duration

	client    *http.Client
	tr        *http.Transport
	pub       *publisher // nil without --publish
	pubStop   context.CancelFunc
	clock     *fwdClock
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
	Proto         string            `json:"proto"` // "flv" or "rtmp"
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
	// Forwarding is each coded frame's delay from the bench's publisher
	// sending it to a viewer receiving it, over every viewer's frames in the
	// window (fwd.go; needs --publish).
	Forwarding *Latency `json:"forwarding,omitempty"`
	// ForwardingSocket is the same delay to the frame's arrival in the
	// viewer's socket (the kernel's receive timestamp of the latest read
	// before the frame was parsed, never earlier than the truth): without
	// the load generator's own wait to read, which a viewer on its own
	// machine does not have. Linux only; beside Forwarding, not instead.
	ForwardingSocket    *Latency `json:"forwarding_socket,omitempty"`
	ForwardingSockLate  int      `json:"forwarding_socket_clock_errors,omitempty"`
	ForwardingUnmatched int      `json:"forwarding_unmatched_tags,omitempty"`
	ForwardingNoBase    int      `json:"forwarding_unmatched_viewers,omitempty"`
	// PublisherLate is how late the bench's publisher sent each tag after
	// its due time (a busy machine; not counted in Forwarding).
	PublisherLate *Latency `json:"publisher_late,omitempty"`
	PublisherErr  string   `json:"publisher_error,omitempty"`
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
	fwd     fwdRec
	sc      *stampConn // the connection, for receive timestamps; nil if none
}

func (s *flvScenario) base() *common { return &s.common }

func (s *flvScenario) flags(fs *flag.FlagSet) {
	if s.rtmp {
		fs.StringVar(&s.playURL, "play", "", "the stream's rtmp:// URL (default rtmp://HOST:1935/live/ROOM, HOST from --url)")
	}
	fs.StringVar(&s.pubFile, "publish", "", "publish this FLV file (looped, paced by its timestamps) to --publish-url, "+
		"which also measures forwarding delay; without it the stream must be live already")
	fs.StringVar(&s.pubURL, "publish-url", "", "rtmp://HOST:PORT/live/STREAM_KEY for --publish")
	fs.DurationVar(&s.pubLead, "publish-lead", 3*time.Second, "media published before the first viewer starts")
	fs.IntVar(&s.viewers, "viewers", 10, "concurrent viewers")
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
	if s.pubFile != "" {
		if err := checkRTMPURL("--publish-url", s.pubURL); err != nil {
			return 0, err
		}
	}
	if s.rtmp {
		if s.playURL == "" {
			u, err := defaultPlayURL(s.url, s.room)
			if err != nil {
				return 0, err
			}
			s.playURL = u
		}
		if err := checkRTMPURL("--play", s.playURL); err != nil {
			return 0, err
		}
	}
	if !strings.HasSuffix(strings.SplitN(s.url, "?", 2)[0], ".flv") {
		s.url = strings.TrimSuffix(s.url, "/") + "/live/" + url.PathEscape(s.room) + ".flv"
	}
	return s.viewers, nil
}

func (s *flvScenario) setup(r *runner) error {
	s.clock = newFwdClock()
	if s.pubFile != "" {
		p, err := loadPublisher(s.pubFile, s.pubURL, s.pubLead, s.clock)
		if err != nil {
			return err
		}
		s.pub = p
		var ctx context.Context
		ctx, s.pubStop = context.WithCancel(r.ctx)
		go p.run(ctx) // owned here: stopped in stop (or below)
		if err := p.waitLive(r.ctx); err != nil {
			s.pubStop()
			<-p.done
			return err
		}
	}
	s.tr = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: s.timeout}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return stamp(c), nil // receive timestamps for forwarding_socket
		},
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

// proto is the viewers' protocol, as reported.
func (s *flvScenario) proto() string {
	if s.rtmp {
		return "rtmp"
	}
	return "flv"
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
	read, closeFn, failure := s.open(ctx, v)
	s.answered.Done()
	if read == nil {
		if failure != "" {
			s.failed.Add(1)
			s.fail(failure)
		}
		return
	}
	defer closeFn()
	s.ttfb.Record(time.Since(t0))
	s.connected.Add(1)
	v.up.Store(true)
	v.alive.Store(true)
	defer v.alive.Store(false)
	kf := false
	err := read(func(tag flvtag.Tag) {
		if !v.st.KeyframeSeen {
			return
		}
		if !kf { // this tag is the first keyframe
			kf = true
			s.ttfk.Record(time.Since(t0))
			s.clock.firstKey(&v.fwd, tag.Timestamp, tag.Size)
		}
		v.mediaMs.Store(int64(v.st.TSMax - v.st.TSFirstKey))
		if mediaTag(tag) {
			s.clock.add(&v.fwd, tag.Type, tag.Timestamp, v.sc.arrived())
		}
	})
	if !s.stopping.Load() {
		v.ended = "stream ended: " + errLabel(err)
		s.ended.Add(1)
	}
}

// open connects one viewer. It returns the stream's reader and closer, or
// nil and why it failed ("" when the run is stopping).
func (s *flvScenario) open(ctx context.Context, v *flvViewer) (read func(func(flvtag.Tag)) error, closeFn func(), failure string) {
	if s.rtmp {
		rr, err := s.dialRTMP(ctx, &v.bytes)
		if err != nil {
			if s.stopping.Load() {
				return nil, nil, ""
			}
			return nil, nil, errLabel(err)
		}
		v.sc, _ = rr.conn.(*stampConn)
		stop := context.AfterFunc(ctx, rr.Close)
		return func(onTag func(flvtag.Tag)) error { return readRTMP(rr, &v.st, onTag) },
			func() { stop(); rr.Close() }, ""
	}
	resp, err := s.get(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) { v.sc, _ = ci.Conn.(*stampConn) },
	}))
	if err != nil {
		if s.stopping.Load() {
			return nil, nil, ""
		}
		return nil, nil, errLabel(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		return nil, nil, "status " + strconv.Itoa(resp.StatusCode)
	}
	return func(onTag func(flvtag.Tag)) error { return readFLV(resp.Body, s.readBuf, &v.bytes, &v.st, onTag) },
		func() { resp.Body.Close() }, ""
}

// mediaTag reports whether tag is a coded audio or video frame (not a
// sequence header or metadata, which carry the last timestamp written).
func mediaTag(tag flvtag.Tag) bool {
	switch tag.Type {
	case flvtag.TypeVideo:
		vi, err := flvtag.ParseVideo(tag.Body)
		return err == nil && vi.Frame
	case flvtag.TypeAudio:
		ai, err := flvtag.ParseAudio(tag.Body)
		return err == nil && !ai.SeqHeader
	}
	return false
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
		s.clock.on.Store(true)
		for _, v := range s.vs {
			v.inWin = v.alive.Load()
			v.b0, v.m0 = v.bytes.Load(), v.mediaMs.Load()
		}
	})
	r.closeWindow()
	s.clock.on.Store(false)
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
	if s.pub != nil {
		s.pubStop()
		<-s.pub.done
	}
}

func (s *flvScenario) report(r *runner) {
	rep := r.rep
	fr := &FLVReport{Proto: s.proto(), URL: s.url, Viewers: s.viewers, Connected: int(s.connected.Load()), Failed: int(s.failed.Load()),
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
	s.forwarding(r, fr)
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

// forwarding adds the forwarding delay (with --publish) to fr.
func (s *flvScenario) forwarding(r *runner, fr *FLVReport) {
	if s.rtmp {
		fr.URL = s.playURL
	}
	if s.pub == nil {
		return
	}
	recs := make([]*fwdRec, 0, len(s.vs))
	for _, v := range s.vs {
		recs = append(recs, &v.fwd)
	}
	res := s.pub.sends.summary(recs)
	fl, pl := res.h.Summary(), s.pub.late.Summary()
	fr.Forwarding, fr.PublisherLate = &fl, &pl
	if res.sock.Count() > 0 {
		sl := res.sock.Summary()
		fr.ForwardingSocket, fr.ForwardingSockLate = &sl, res.sockLate
	}
	fr.ForwardingUnmatched, fr.ForwardingNoBase = res.unmatchedTags, res.unmatchedViewers
	r.violation(uint64(res.unmatchedViewers), "viewer%s whose first keyframe the publisher never sent")
	if s.pub.err != nil {
		fr.PublisherErr = s.pub.err.Error()
		r.violation(1, "publisher failure")
	}
}
