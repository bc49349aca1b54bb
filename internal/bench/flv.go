package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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

type flvOpts struct {
	common
	viewers    int
	ramp       int
	bitrate    float64
	stallRatio float64
	readBuf    int
	settle     time.Duration
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

func runFLV(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o flvOpts
	fs := flag.NewFlagSet("flv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, 20*time.Second)
	fs.IntVar(&o.viewers, "viewers", 10, "concurrent HTTP-FLV viewers")
	fs.IntVar(&o.viewers, "conns", 10, "alias of --viewers")
	fs.IntVar(&o.ramp, "ramp", 200, "viewers started per second (0 = all at once)")
	fs.Float64Var(&o.bitrate, "bitrate", 0, "the stream's bitrate in kbit/s (0 = measure it from the media)")
	fs.Float64Var(&o.stallRatio, "stall-ratio", 0.9, "a viewer below this share of the stream bitrate is stalled")
	fs.IntVar(&o.readBuf, "read-buffer", 32<<10, "read buffer per viewer (bytes)")
	fs.DurationVar(&o.settle, "settle", time.Second, "wait after the ramp before the window starts")
	if done, err := parseFlags(fs, args); done {
		return err
	}
	switch {
	case o.viewers < 1:
		return errors.New("bench flv: --viewers must be at least 1")
	case o.stallRatio <= 0 || o.stallRatio > 1 || o.bitrate < 0:
		return errors.New("bench flv: --stall-ratio must be in (0,1] and --bitrate ≥ 0")
	case o.readBuf < 1024:
		return errors.New("bench flv: --read-buffer must be at least 1024")
	}
	if !strings.HasSuffix(strings.SplitN(o.url, "?", 2)[0], ".flv") {
		o.url = strings.TrimSuffix(o.url, "/") + "/live/" + url.PathEscape(o.room) + ".flv"
	}
	t, watch, stopProf, err := o.setup(ctx, o.viewers)
	if err != nil {
		return err
	}
	defer stopProf()
	meter := newClientMeter()
	rep := &Report{Scenario: "flv", StartedAt: time.Now(), Target: t.base.String(), Room: o.room, Params: params(fs)}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: o.timeout}).DialContext,
		DisableCompression:    true,
		ResponseHeaderTimeout: o.timeout,
		MaxIdleConnsPerHost:   -1,
		ReadBufferSize:        o.readBuf,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	var (
		stopping  atomic.Bool
		connected atomic.Int64
		failed    atomic.Int64
		ended     atomic.Int64
		ttfb      Hist
		ttfk      Hist
		emu       sync.Mutex
		errs      errCounter
		wg        sync.WaitGroup
		phase     atomic.Value
	)
	phase.Store("ramp")
	vs := make([]*flvViewer, o.viewers)
	for i := range vs {
		vs[i] = &flvViewer{}
	}
	fail := func(label string) {
		emu.Lock()
		errs.add(label, 1)
		emu.Unlock()
	}
	viewer := func(v *flvViewer) {
		defer wg.Done()
		req, err := http.NewRequestWithContext(runCtx, "GET", o.url, nil)
		if err != nil {
			failed.Add(1)
			fail(errLabel(err))
			return
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if !stopping.Load() {
				failed.Add(1)
				var ue *url.Error
				if errors.As(err, &ue) {
					err = ue.Err
				}
				fail(errLabel(err))
			}
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			failed.Add(1)
			fail("status " + strconv.Itoa(resp.StatusCode))
			return
		}
		ttfb.Record(time.Since(t0))
		connected.Add(1)
		v.up.Store(true)
		v.alive.Store(true)
		defer v.alive.Store(false)
		kf := false
		err = readFLV(resp.Body, &v.bytes, &v.st, func() {
			if v.st.KeyframeSeen {
				if !kf {
					kf = true
					ttfk.Record(time.Since(t0))
				}
				v.mediaMs.Store(int64(v.st.TSMax - v.st.TSFirstKey))
			}
		})
		if !stopping.Load() {
			v.ended = "stream ended: " + errLabel(err)
			ended.Add(1)
		}
	}

	rampEst := time.Duration(0)
	if o.ramp > 0 {
		rampEst = time.Duration(float64(o.viewers) / float64(o.ramp) * float64(time.Second))
	}
	var prevBytes int64
	sumBytes := func() (n int64) {
		for _, v := range vs {
			n += v.bytes.Load()
		}
		return
	}
	bar := startProgress(stderr, o.progress, "flv", rampEst+o.settle+o.duration, func(dt time.Duration) string {
		meter.sample()
		watch.sample()
		b := sumBytes()
		s := fmt.Sprintf("%-6s viewers %d/%d  %.1f Mbit/s  first keyframe p99 %s  errs %d",
			phase.Load(), connected.Load(), o.viewers, float64(b-prevBytes)*8/1e6/dt.Seconds(),
			ms(float64(ttfk.Quantile(0.99))/1e6), failed.Load()+ended.Load())
		prevBytes = b
		return s
	})
	defer bar.Stop()

	rampStart := time.Now()
	started := 0
	for i, v := range vs {
		if o.ramp > 0 && !sleepCtx(runCtx, time.Until(rampStart.Add(time.Duration(float64(i)/float64(o.ramp)*float64(time.Second))))) {
			break
		}
		if runCtx.Err() != nil {
			break
		}
		started++
		wg.Add(1)
		go viewer(v)
	}
	rep.RampS = round3(time.Since(rampStart).Seconds())
	phase.Store("settle")
	sleepCtx(runCtx, o.settle)

	phase.Store("run")
	watch.start()
	for _, v := range vs {
		v.inWin = v.alive.Load()
		v.b0, v.m0 = v.bytes.Load(), v.mediaMs.Load()
	}
	winStart := time.Now()
	sleepCtx(runCtx, o.duration)
	window := time.Since(winStart)
	for _, v := range vs {
		v.b1, v.m1 = v.bytes.Load(), v.mediaMs.Load()
	}
	rep.Server = watch.finish(window)
	rep.WindowS = round3(window.Seconds())
	rep.Interrupted = ctx.Err() != nil
	stopping.Store(true)
	cancel()
	wg.Wait()
	bar.Stop()

	fr := &FLVReport{URL: o.url, Viewers: o.viewers, Connected: int(connected.Load()), Failed: int(failed.Load()),
		EndedEarly: int(ended.Load()), FirstByte: ttfb.Summary(), FirstKeyframe: ttfk.Summary(),
		StallRatio: o.stallRatio, StartProblems: map[string]int{}}
	var content, kbps, speed []float64
	var total int64
	for _, v := range vs {
		total += v.bytes.Load()
		if v.ended != "" {
			fail(v.ended)
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
	fr.StreamKbps, fr.StreamSource = o.bitrate, "flag"
	if o.bitrate == 0 {
		fr.StreamKbps, fr.StreamSource = round1(dist(content).P50), "measured (median content bitrate)"
	}
	if fr.StreamKbps > 0 {
		for _, k := range kbps {
			if k < o.stallRatio*fr.StreamKbps {
				fr.Stalled++
			}
		}
	}
	emu.Lock()
	fr.Errors = errs.m
	emu.Unlock()
	rep.FLV = fr
	if s := rep.Server; s != nil && s.MeasurementProblem == "" && fr.Connected > 0 {
		s.CPUPercentPerView = round3(s.CPUPercent / float64(fr.Connected))
		s.KiBPerViewer = round1(float64(s.RSSEndKiB-s.RSSBaseKiB) / float64(fr.Connected))
	}
	rep.Client = meter.report()

	add := func(n int, what string) {
		if n > 0 {
			rep.Violations = append(rep.Violations, plural(uint64(n), what))
		}
	}
	add(fr.Failed, "failed viewer")
	if !rep.Interrupted {
		add(fr.EndedEarly, "stream%s that ended early")
		add(fr.Stalled, "stalled viewer")
		add(fr.NoKeyframe, "viewer%s without a keyframe")
	}
	for _, k := range sortedKeys(fr.StartProblems) {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%s: %d viewers", k, fr.StartProblems[k]))
	}
	return rep.finish(o.json, stdout)
}
