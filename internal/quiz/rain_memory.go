package quiz

import (
	"context"
	"strconv"
)

// memRain is one rain of a memory activity (fields exported by JSON name
// for the snapshot); guarded by its activity's lock.
type memRain struct {
	Amounts []int64        `json:"amounts"`
	Max     int            `json:"max"`
	Ends    int64          `json:"ends"`
	Paid    int64          `json:"paid"`
	Grabs   int64          `json:"grabs"`
	Users   map[string]int `json:"users"`
	Won     []Packet       `json:"won"`
	Closed  bool           `json:"closed"`
	Settled bool           `json:"settled"`
}

func (r *memRain) live() RainLive {
	return RainLive{Started: true, Settled: r.Settled, EndsAt: r.Ends, Packets: len(r.Amounts), PaidCents: r.Paid,
		Left: len(r.Amounts) - len(r.Won), Grabs: r.Grabs, Winners: int64(len(r.Users))}
}

// rainLocked returns rain k of a, nil if not started; a.mu is held.
func (a *memAct) rainLocked(k int) *memRain {
	if a.Rains == nil {
		return nil
	}
	return a.Rains[strconv.Itoa(k)]
}

// RainStart implements State.
func (m *Memory) RainStart(_ context.Context, r RainRules) (l RainLive, changed bool, err error) {
	err = m.with(r.ID, true, func(a *memAct) error {
		if mr := a.rainLocked(r.K); mr != nil {
			l = mr.live()
			return nil
		}
		if a.Rains == nil {
			a.Rains = map[string]*memRain{}
		}
		mr := &memRain{Amounts: append([]int64(nil), r.Amounts...), Max: r.MaxPerUser, Ends: r.EndsAt, Users: map[string]int{}}
		a.Rains[strconv.Itoa(r.K)] = mr
		l, changed, a.dirty = mr.live(), true, true
		return nil
	})
	return l, changed, err
}

// Grab implements State. The packets won are written through the Saver
// before Grab returns (outside the activity's lock), so a crash after the
// winner was told loses nothing.
func (m *Memory) Grab(ctx context.Context, id string, k int, user string, now int64, taps int) (g GrabResult, err error) {
	var won []Packet
	err = m.with(id, false, func(a *memAct) error {
		r := a.rainLocked(k)
		if r == nil {
			return ErrUnknown
		}
		r.Grabs += int64(taps)
		for range taps {
			reason := ""
			switch {
			case now > r.Ends || r.Closed:
				reason = ReasonEnded
			case len(r.Won) >= len(r.Amounts):
				reason = ReasonEmpty
			case r.Users[user] >= r.Max:
				reason = ReasonLimit
			}
			if reason != "" {
				if len(won) == 0 {
					g.Reason = reason
				}
				break
			}
			p := Packet{N: len(r.Won), User: user, AmountCents: r.Amounts[len(r.Won)], At: now}
			if len(won) == 0 {
				g.Packet = p.N
			}
			r.Won = append(r.Won, p)
			r.Users[user]++
			r.Paid += p.AmountCents
			g.AmountCents += p.AmountCents
			won, a.dirty = append(won, p), true
		}
		g.Packets = len(won)
		return nil
	})
	if err == nil && len(won) > 0 && m.saver != nil {
		err = m.saver.SavePackets(ctx, id, k, won)
	}
	return g, err
}

// Rain implements State.
func (m *Memory) Rain(_ context.Context, id string, k int) (l RainLive, err error) {
	err = m.with(id, false, func(a *memAct) error {
		if r := a.rainLocked(k); r != nil {
			l = r.live()
		}
		return nil
	})
	if err == ErrUnknown {
		return RainLive{}, nil
	}
	return l, err
}

// RainClose implements State.
func (m *Memory) RainClose(_ context.Context, id string, k int) (out []Packet, err error) {
	err = m.with(id, true, func(a *memAct) error {
		if r := a.rainLocked(k); r != nil {
			if !r.Closed {
				r.Closed, a.dirty = true, true
			}
			out = append(out, r.Won...)
		}
		return nil
	})
	return out, err
}

// RainSettled implements State.
func (m *Memory) RainSettled(_ context.Context, id string, k int) error {
	return m.with(id, true, func(a *memAct) error {
		if r := a.rainLocked(k); r != nil && !r.Settled {
			r.Settled, a.dirty = true, true
		}
		return nil
	})
}
