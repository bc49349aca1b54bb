package quiz

import (
	"context"
	"errors"
	"math"
	"strconv"
	"time"

	"roomcast/internal/errs"
	"roomcast/internal/message"
)

// KindRain is the rain's start: a must-deliver function message.
const KindRain = message.KindRedPacketRain

// RainPrizeKind is the prize kind of a rain's packets in /api/me/prizes.
const RainPrizeKind = "rain"

// TapsPerSecond is the rate a client taps at when its throttle is 1: the
// throttle scales it down (the web viewer and `roomcast bench rain` tap at
// most this fast).
const TapsPerSecond = 5

// closeGrace is how long after its end a rain is closed to grabs and its
// packets written to SQL: grabs decided by a node whose clock lags still
// land before the close.
const closeGrace = 2 * time.Second

// RainData is a red_packet_rain message's data.
type RainData struct {
	Activity   string  `json:"activity"`
	Rain       int     `json:"rain"`
	DurationMS int64   `json:"duration_ms"`
	EndsAt     int64   `json:"ends_at"`
	Throttle   float64 `json:"throttle"`
}

// RainView is a rain as GET /api/activities/{id}/rains/{k} shows it.
type RainView struct {
	Activity    string `json:"activity"`
	Rain        int    `json:"rain"`
	Status      string `json:"status"` // scheduled, running, ended, settled (its packets are in SQL)
	BudgetCents int64  `json:"budget_cents"`
	Packets     int    `json:"packets"`
	PaidCents   int64  `json:"paid_cents"`
	PacketsLeft int    `json:"packets_left"`
	Grabs       int64  `json:"grabs"`
	Winners     int64  `json:"winners"`
	MaxPerUser  int    `json:"max_per_user"`
	DurationMS  int64  `json:"duration_ms"`
	EndsAt      int64  `json:"ends_at,omitempty"`
}

// Throttle is the share of taps a client sends (0, 1]: the taps wanted per
// second — this node's --rain-rate, or 20 taps per packet over the rain if
// that is more — over the taps offered, online users × TapsPerSecond;
// never below 0.001 and rounded up to 4 decimals. rate 0 (no bucket) is 1.
func Throttle(online, packets int, durationMS int64, rate int) float64 {
	if rate <= 0 {
		return 1
	}
	want := max(float64(rate), 20*float64(packets)*1000/float64(max(durationMS, 1)))
	t := want / (float64(max(online, 1)) * TapsPerSecond)
	t = math.Ceil(t*10000) / 10000
	return min(1, max(0.001, t))
}

// rainOf returns rain k of a.
func rainOf(a *Activity, k int) (*Rain, error) {
	if k < 0 || k >= len(a.Rains) || len(a.Rains[k].Amounts) != a.Rains[k].Packets {
		return nil, errs.New(CodeUnknownRain, "the activity has no rain "+strconv.Itoa(k))
	}
	return &a.Rains[k], nil
}

func (s *Service) rainView(a *Activity, k int, l RainLive) *RainView {
	r := &a.Rains[k]
	v := &RainView{Activity: a.ID, Rain: k, Status: StatusScheduled, BudgetCents: r.BudgetCents, Packets: r.Packets,
		PacketsLeft: r.Packets, MaxPerUser: r.MaxPerUser, DurationMS: r.DurationMS}
	if !l.Started {
		return v
	}
	v.PaidCents, v.PacketsLeft, v.Grabs, v.Winners, v.EndsAt = l.PaidCents, l.Left, l.Grabs, l.Winners, l.EndsAt
	switch {
	case l.Settled:
		v.Status = StatusSettled
	case s.now().UnixMilli() > l.EndsAt:
		v.Status = StatusEnded
	default:
		v.Status = StatusRunning
	}
	return v
}

// StartRain starts rain k (operator; idempotent) and sends red_packet_rain
// once.
func (s *Service) StartRain(ctx context.Context, c Caller, id string, k int) (*RainView, error) {
	a, err := s.step(ctx, c, id)
	if err != nil {
		return nil, err
	}
	r, err := rainOf(a, k)
	if err != nil {
		return nil, err
	}
	l, _, err := s.d.State.RainStart(ctx, RainRules{ID: id, K: k, Amounts: r.Amounts, MaxPerUser: r.MaxPerUser,
		EndsAt: s.now().UnixMilli() + r.DurationMS})
	if err != nil {
		return nil, unavailable(err)
	}
	online := 0
	if s.d.Online != nil {
		if online, err = s.d.Online.Count(ctx, a.Room); err != nil {
			s.d.Log.Warn("quiz: rain: online count", "room", a.Room, "err", err)
		}
	}
	data := RainData{Activity: id, Rain: k, DurationMS: r.DurationMS, EndsAt: l.EndsAt,
		Throttle: Throttle(online, r.Packets, r.DurationMS, s.cfg.RainRate)}
	if err := s.announce(ctx, a, "rain:"+strconv.Itoa(k), KindRain, data); err != nil {
		return nil, err
	}
	s.scheduleClose(a, k, l.EndsAt)
	return s.rainView(a, k, l), nil
}

// MaxGrabTaps is the most taps one grab (HTTP body, WebSocket frame) may
// carry: a client gathers its user's taps and sends them together.
const MaxGrabTaps = 20

// ValidTaps reports whether a grab's taps are acceptable: 0 (named none:
// one tap) or 1–MaxGrabTaps.
func ValidTaps(taps int) bool { return taps >= 0 && taps <= MaxGrabTaps }

// errTaps is the answer to a grab with taps out of range.
func errTaps() error {
	return errs.New(errs.BadRequest, "taps must be 1–"+strconv.Itoa(MaxGrabTaps))
}

// Admit takes tokens from this node's bucket for a grab of taps taps (0:
// one) and returns how many it got, at most the taps: 0 means Grab would
// answer ReasonThrottled now. A caller that got some hands the grab to
// GrabAdmitted, which takes no more tokens.
func (s *Service) Admit(taps int) int { return s.bucket.AllowN(max(taps, 1)) }

// Grab is one tap at rain k for user, after this node's token bucket.
func (s *Service) Grab(ctx context.Context, user, id string, k int) (GrabResult, error) {
	return s.GrabTaps(ctx, user, id, k, 0)
}

// GrabTaps is a grab carrying taps taps (0: it names none, one tap,
// answered as Grab always was): each tap the bucket admits is a chance at
// the next packet.
func (s *Service) GrabTaps(ctx context.Context, user, id string, k, taps int) (GrabResult, error) {
	if user == "" {
		return GrabResult{}, errs.New(errs.Unauthorized, "grabbing needs a user token")
	}
	if !ValidTaps(taps) {
		return GrabResult{}, errTaps()
	}
	admitted := s.Admit(taps)
	if admitted == 0 {
		return GrabResult{Reason: ReasonThrottled, Taps: taps}, nil
	}
	return s.GrabAdmitted(ctx, user, id, k, taps, admitted)
}

// GrabAdmitted is GrabTaps for a grab whose admitted taps (≥ 1) Admit
// already took.
func (s *Service) GrabAdmitted(ctx context.Context, user, id string, k, taps, admitted int) (GrabResult, error) {
	if user == "" {
		return GrabResult{}, errs.New(errs.Unauthorized, "grabbing needs a user token")
	}
	if !ValidTaps(taps) || admitted < 1 || admitted > max(taps, 1) {
		return GrabResult{}, errTaps()
	}
	a, err := s.activity(ctx, id)
	if err != nil {
		return GrabResult{}, err
	}
	if _, err := rainOf(a, k); err != nil {
		return GrabResult{}, err
	}
	g, err := s.d.State.Grab(ctx, id, k, user, s.now().UnixMilli(), admitted)
	if errors.Is(err, ErrUnknown) {
		return GrabResult{}, errs.New(CodeRainNotStarted, "the rain has not started")
	}
	if err != nil {
		return GrabResult{}, unavailable(err)
	}
	if g.Reason == ReasonEnded {
		s.scheduleClose(a, k, s.now().UnixMilli())
	}
	g.Taps, g.Admitted = taps, admitted
	return g, nil
}

// Rain is rain k's state; a rain over for closeGrace is written to SQL
// first if no node has done it yet (the node that started it may be gone).
func (s *Service) Rain(ctx context.Context, id string, k int) (*RainView, error) {
	a, err := s.activity(ctx, id)
	if err != nil {
		return nil, err
	}
	if _, err := rainOf(a, k); err != nil {
		return nil, err
	}
	if _, err := s.live(ctx, a); err != nil {
		return nil, err
	}
	l, err := s.d.State.Rain(ctx, id, k)
	if err != nil {
		return nil, unavailable(err)
	}
	if !l.Started { // its live state may have expired after settlement: SQL has the packets
		if l, err = s.settledFromSQL(ctx, a, k); err != nil {
			return nil, err
		}
	}
	if l.Started && !l.Settled && s.now().UnixMilli() > l.EndsAt+closeGrace.Milliseconds() {
		if err := s.closeRain(ctx, a, k); err != nil {
			return nil, err
		}
		if l, err = s.d.State.Rain(ctx, id, k); err != nil {
			return nil, unavailable(err)
		}
	}
	return s.rainView(a, k, l), nil
}

// settledFromSQL rebuilds a settled rain's state from its packets in SQL
// (not started if it has none; grabs are not kept there).
func (s *Service) settledFromSQL(ctx context.Context, a *Activity, k int) (RainLive, error) {
	ps, err := s.d.Store.RainPackets(ctx, a.ID, k)
	if err != nil {
		return RainLive{}, unavailable(err)
	}
	if len(ps) == 0 {
		return RainLive{}, nil
	}
	l := RainLive{Started: true, Settled: true, Packets: a.Rains[k].Packets, Left: a.Rains[k].Packets - len(ps)}
	users := map[string]bool{}
	for _, p := range ps {
		l.PaidCents += p.AmountCents
		l.EndsAt = max(l.EndsAt, p.At)
		users[p.User] = true
	}
	l.Winners = int64(len(users))
	return l, nil
}

// closeRain closes rain k to grabs and writes its packets to SQL
// (idempotent: packets are keyed by activity, rain and packet).
func (s *Service) closeRain(ctx context.Context, a *Activity, k int) error {
	ps, err := s.d.State.RainClose(ctx, a.ID, k)
	if err != nil {
		return unavailable(err)
	}
	if err := s.d.Store.SavePackets(ctx, a.ID, k, ps); err != nil {
		return unavailable(err)
	}
	if err := s.d.State.RainSettled(ctx, a.ID, k); err != nil {
		return unavailable(err)
	}
	return nil
}

// scheduleClose closes rain k closeGrace after endsAt, once per
// node, retrying while SQL or Redis is unreachable; Close stops it.
func (s *Service) scheduleClose(a *Activity, k int, endsAt int64) {
	key := a.ID + ":" + strconv.Itoa(k)
	s.mu.Lock()
	if s.closing[key] {
		s.mu.Unlock()
		return
	}
	if len(s.closing) > 10000 {
		clear(s.closing) // a rain closed twice writes nothing twice
	}
	s.closing[key] = true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		wait := time.Until(time.UnixMilli(endsAt).Add(closeGrace))
		for {
			t := time.NewTimer(max(wait, 0))
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			err := s.closeRain(ctx, a, k)
			cancel()
			if err == nil {
				return
			}
			s.d.Log.Warn("quiz: rain: settle", "activity", a.ID, "rain", k, "err", err)
			wait = 5 * time.Second
		}
	}()
}

// PrizesTotal is the sum of everything user won.
func (s *Service) PrizesTotal(ctx context.Context, user string) (int64, error) {
	n, err := s.d.Store.PrizesTotal(ctx, user)
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}
