// Package service is the live-room logic layer (R18): every send, from HTTP
// or WebSocket, goes validate → moderate → sequence and store → publish
// here, and moderation actions and system messages are issued from here.
// Transports call it; it knows no HTTP or WebSocket.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/errs"
	"roomcast/internal/likes"
	"roomcast/internal/message"
	"roomcast/internal/metrics"
	"roomcast/internal/moderation"
	"roomcast/internal/presence"
	"roomcast/internal/rankings"
	"roomcast/internal/room"
	"roomcast/internal/timeline"
)

// Rooms is what the service needs of the room registry.
type Rooms interface {
	Get(ctx context.Context, id string, withKey bool) (room.Room, error)
	IDs(ctx context.Context) ([]string, error)
}

// Clock is the live session clock (record.Recorder): the session live in
// room now and the video position in it, in ms since its first frame.
type Clock interface {
	Position(ctx context.Context, room string) (session string, ms int64, ok bool)
}

// Archive keeps the room messages of live sessions (archive.Archive). Add
// must not block: the send's ack never waits for it.
type Archive interface {
	Add(session string, m *message.Message)
	// Like counts one like at video position ms (total: the room's new
	// like total); the archive keeps like summaries, not every like.
	Like(session, room string, ms, total int64)
}

// Rankings counts each gift sent into the room's gift rankings (issue 13).
type Rankings interface {
	Add(ctx context.Context, g rankings.Gift) error
}

// PresenceFeed is where the service takes presence summaries from (the
// fan-out node, which sees connections come and go).
type PresenceFeed interface {
	TakePresence() []presence.Summary
}

// Config tunes the service.
type Config struct {
	Limits    message.Limits
	KickBlock time.Duration // default 5m
	// PresenceEvery is how often enter/leave messages are written from the
	// presence feed; default 1s.
	PresenceEvery time.Duration
}

// Service is the logic layer.
type Service struct {
	cfg      Config
	rooms    Rooms
	tl       timeline.Timeline
	commit   Appender
	bus      bus.Bus
	likes    likes.Counter
	mod      moderation.State
	filter   *moderation.Filter
	gifts    *message.Catalogue
	metrics  *metrics.Metrics
	log      *slog.Logger
	clock    Clock   // nil: no video_ms stamping
	archive  Archive // nil: no archive
	feed     PresenceFeed
	rankings Rankings // nil: no rankings
	idPrefix string
	idSeq    atomic.Uint64

	stop context.CancelFunc // ends the announcer
	done chan struct{}      // closed when the announcer has returned
}

// Appender sequences and stores one message; the group committer (issue
// 14, R12) batches a room's concurrent appends into one store call.
type Appender interface {
	Append(ctx context.Context, m *message.Message) (uint64, error)
}

// Deps are the service's collaborators.
type Deps struct {
	Rooms    Rooms
	Timeline timeline.Timeline
	// Commit, if set, stores room messages (group commit); nil: straight
	// to the Timeline.
	Commit  Appender
	Bus     bus.Bus
	Likes   likes.Counter
	Mod     moderation.State
	Filter  *moderation.Filter
	Gifts   *message.Catalogue
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Clock and Archive (issue 10) may be nil: no video_ms, no archive.
	Clock   Clock
	Archive Archive
	// Presence, if set, feeds the enter/leave messages the service writes
	// on its own ticker (stopped by Close).
	Presence PresenceFeed
	// Rankings, if set, counts every gift stored (issue 13).
	Rankings Rankings
}

// New returns a Service. With a presence feed it starts the goroutine that
// writes enter/leave messages; Close stops it.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Rooms == nil || d.Timeline == nil || d.Bus == nil || d.Likes == nil || d.Mod == nil || d.Gifts == nil || d.Metrics == nil {
		return nil, errors.New("service: missing dependency")
	}
	if cfg.KickBlock <= 0 {
		cfg.KickBlock = 5 * time.Minute
	}
	if cfg.PresenceEvery <= 0 {
		cfg.PresenceEvery = time.Second
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	commit := d.Commit
	if commit == nil {
		commit = d.Timeline
	}
	s := &Service{cfg: cfg, rooms: d.Rooms, tl: d.Timeline, commit: commit, bus: d.Bus, likes: d.Likes, mod: d.Mod, filter: d.Filter,
		gifts: d.Gifts, metrics: d.Metrics, log: d.Log, clock: d.Clock, archive: d.Archive, feed: d.Presence, rankings: d.Rankings,
		idPrefix: auth.RandomHex(4) + "-", done: make(chan struct{})}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if s.feed != nil {
		go s.announcer(ctx)
	} else {
		close(s.done)
	}
	return s, nil
}

// Gifts returns the gift catalogue.
func (s *Service) Gifts() *message.Catalogue { return s.gifts }

// newID returns a globally unique message id: a random per-process prefix
// and a counter.
func (s *Service) newID() string {
	return s.idPrefix + strconv.FormatUint(s.idSeq.Add(1), 36)
}

// Identity is a verified sender.
type Identity struct {
	Claims auth.Claims
	// Admin is true for callers holding the admin key (or an admin token).
	Admin bool
}

func (id Identity) role() message.Role {
	if id.Admin || id.Claims.Role == auth.RoleAdmin {
		return message.RoleAdmin
	}
	if id.Claims.Role == auth.RoleAnchor {
		return message.RoleAnchor
	}
	return message.RoleViewer
}

// Result is an accepted send.
type Result struct {
	Msg   *message.Message
	Likes int64 // for likes: the room's new total
	// Duplicate is set when the send repeated an earlier one's
	// client_msg_id: Msg holds the first send's seq, id, ts and priority.
	Duplicate bool
}

// Send validates, moderates and stores one message from id into roomID.
func (s *Service) Send(ctx context.Context, id Identity, roomID string, req *message.Request) (Result, error) {
	start := time.Now()
	res, err := s.send(ctx, id, roomID, req)
	if err != nil {
		s.metrics.SendRejected.WithLabelValues(errs.From(err).Code).Inc()
		return res, err
	}
	s.metrics.MessagesIn.WithLabelValues(string(req.Kind)).Inc()
	s.metrics.SendDuration.Observe(time.Since(start).Seconds())
	return res, nil
}

func (s *Service) send(ctx context.Context, id Identity, roomID string, req *message.Request) (Result, error) {
	r, err := s.rooms.Get(ctx, roomID, false)
	if err != nil {
		return Result{}, err
	}
	user := id.Claims.Sub
	// A repeat (same client_msg_id) is answered with the first send's ack
	// by the append itself, atomically (timeline.ErrDuplicate below), so a
	// send costs no separate look-up (issue 14: none per message in Redis).
	// Only a repeat the checks would turn away — a mute or the rate limit
	// that came after the first send was stored — is looked up (refused).
	dedupe := dedupeKey(user, req)
	privileged := id.role() == message.RoleAdmin
	if !privileged {
		if kicked, err := s.mod.Kicked(ctx, roomID, user); err != nil {
			return Result{}, unavailable(err)
		} else if kicked {
			return s.refused(ctx, roomID, dedupe, req.Kind, errs.New(errs.Kicked, "you were removed from this room"))
		}
		if muted, err := s.mod.Muted(ctx, roomID, user); err != nil {
			return Result{}, unavailable(err)
		} else if muted {
			return s.refused(ctx, roomID, dedupe, req.Kind, errs.New(errs.Muted, "you are muted in this room"))
		}
	}
	sender := message.Sender{User: message.User{ID: user, Name: id.Claims.Name, Level: id.Claims.Level}, Role: id.role(), Owner: r.AnchorID == user}
	m, err := message.Build(req, sender, roomID, s.gifts, s.cfg.Limits)
	if err != nil {
		return Result{}, err
	}
	if m.Text != "" && s.filter != nil {
		text, ok := s.filter.Check(m.Text)
		if !ok {
			return Result{}, errs.New(errs.BlockedWord, "the message contains a blocked word")
		}
		m.Text = text
	}
	// Likes are aggregated, not delivered, so they do not use up the rate.
	if !privileged && !sender.Owner && m.Kind != message.KindLike {
		ok, wait, err := s.mod.Allow(ctx, user)
		if err != nil {
			return Result{}, unavailable(err)
		}
		if !ok {
			e := errs.New(errs.RateLimited, "too many messages; slow down")
			e.RetryAfterMS = max(1, wait.Milliseconds())
			return s.refused(ctx, roomID, dedupe, req.Kind, e)
		}
	}
	m.ID = s.newID()
	if m.Scope == message.ScopeRoom {
		m.Dedupe = dedupe
	}
	if m.Kind == message.KindLike {
		total, err := s.likes.Add(ctx, roomID, 1)
		if err != nil {
			return Result{}, unavailable(err)
		}
		m.TS = time.Now().UnixMilli()
		if s.clock != nil && s.archive != nil { // likes are archived as summaries
			if sid, pos, ok := s.clock.Position(ctx, roomID); ok {
				s.archive.Like(sid, roomID, pos, total)
			}
		}
		return Result{Msg: m, Likes: total}, nil
	}
	return s.deliver(ctx, m, req.VideoMS)
}

// refused answers a send the checks turned away with refusal, unless it
// repeats (dedupe) a send that was stored: then it gets that send's ack, as
// a repeat that passed the checks does from the append.
func (s *Service) refused(ctx context.Context, roomID, dedupe string, kind message.Kind, refusal error) (Result, error) {
	if dedupe == "" {
		return Result{}, refusal
	}
	ack, ok, err := s.tl.Recall(ctx, roomID, dedupe)
	if err != nil {
		return Result{}, unavailable(err)
	}
	if !ok {
		return Result{}, refusal
	}
	return Result{Msg: &message.Message{Seq: ack.Seq, ID: ack.ID, Room: roomID, Kind: kind, Scope: message.ScopeRoom,
		TS: ack.TS, Priority: ack.Priority, Epoch: ack.Epoch}, Duplicate: true}, nil
}

// deliver stores and publishes m according to its scope.
// clientMS is the video position the sender reported, if any.
func (s *Service) deliver(ctx context.Context, m *message.Message, clientMS *int64) (Result, error) {
	switch m.Scope {
	case message.ScopeUser:
		m.TS = time.Now().UnixMilli()
		m.Seal()
		if err := s.bus.Publish(ctx, bus.Users, bus.Event{Type: bus.EvUserMsg, User: m.To, Room: m.Room, Msg: m}); err != nil {
			return Result{}, unavailable(err)
		}
		return Result{Msg: m}, nil
	case message.ScopeBroadcast:
		ids, err := s.rooms.IDs(ctx)
		if err != nil {
			return Result{}, unavailable(err)
		}
		var own *message.Message
		for _, rid := range ids {
			cp := *m
			cp.Room = rid
			cp.ID = m.ID + "." + rid // ids stay globally unique; the prefix names the broadcast
			if err := s.appendRoom(ctx, &cp, nil); err != nil {
				return Result{}, unavailable(err)
			}
			if rid == m.Room {
				own = &cp
			}
		}
		if own == nil {
			own = m
		}
		return Result{Msg: own}, nil
	}
	if err := s.appendRoom(ctx, m, clientMS); errors.Is(err, timeline.ErrDuplicate) { // raced with its own repeat
		return Result{Msg: m, Duplicate: true}, nil
	} else if err != nil {
		return Result{}, unavailable(err)
	}
	return Result{Msg: m}, nil
}

// maxClientLag is how far behind the stream a client-reported video
// position may be and still be used.
const maxClientLag = 30000

// appendRoom stamps m with the room's session clock, sequences and stores
// it, and hands it to the archive (which never blocks). The stamp is the
// client's reported position when plausible — not ahead of the stream and
// at most 30 s behind it — and the server's own position otherwise.
func (s *Service) appendRoom(ctx context.Context, m *message.Message, clientMS *int64) error {
	var session string
	if s.clock != nil {
		if sid, pos, ok := s.clock.Position(ctx, m.Room); ok {
			v := pos
			if clientMS != nil && *clientMS >= 0 && *clientMS <= pos && pos-*clientMS <= maxClientLag {
				v = *clientMS
			}
			m.VideoMS, session = &v, sid
		}
	}
	if _, err := s.commit.Append(ctx, m); err != nil {
		return err // ErrDuplicate too: the first append archived it
	}
	if session != "" && s.archive != nil {
		s.archive.Add(session, m)
	}
	if m.Kind == message.KindGift && m.Gift != nil && m.User != nil && s.rankings != nil {
		// The gift is stored: a ranking that cannot be updated is logged,
		// never a failed send (the sender would repeat the gift).
		g := rankings.Gift{Room: m.Room, Session: session, User: m.User.ID, Name: m.User.Name,
			ValueCents: m.Gift.ValueCents * int64(m.Gift.Count), Count: int64(m.Gift.Count), At: time.Now()}
		if m.TS > 0 {
			g.At = time.UnixMilli(m.TS)
		}
		if err := s.rankings.Add(ctx, g); err != nil {
			s.log.Warn("service: gift ranking", "room", m.Room, "err", err)
		}
	}
	return nil
}

// dedupeKey is the idempotency key of a send with a client_msg_id: the
// sender and the id, unambiguous whatever bytes either holds. Likes and
// user-scoped messages get no seq and are not deduplicated.
func dedupeKey(user string, req *message.Request) string {
	if req.ClientMsgID == "" || len(req.ClientMsgID) > message.MaxClientMsgID || req.Kind == message.KindLike || (req.Scope != "" && req.Scope != message.ScopeRoom) {
		return ""
	}
	return strconv.Itoa(len(user)) + ":" + user + ":" + req.ClientMsgID
}

func unavailable(err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return e
	}
	return &errs.Error{Code: errs.Unavailable, Message: "message store unavailable, try again: " + err.Error()}
}

var systemUser = message.User{ID: "system", Name: "system"}

// System appends a must-deliver system message (e.g. live_start) to a room.
func (s *Service) System(ctx context.Context, roomID string, kind message.Kind, text string, data any) (*message.Message, error) {
	u := systemUser
	m := &message.Message{ID: s.newID(), Room: roomID, Kind: kind, Scope: message.ScopeRoom, User: &u, Text: text}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return nil, fmt.Errorf("service: system data: %w", err)
		}
		m.Data = raw
	}
	m.Priority = message.ComputePriority(m)
	if err := s.appendRoom(ctx, m, nil); err != nil {
		return nil, unavailable(err)
	}
	s.metrics.MessagesIn.WithLabelValues(string(kind)).Inc()
	return m, nil
}

// Lifecycle turns a room lifecycle event into a must-deliver system message.
func (s *Service) Lifecycle(ctx context.Context, roomID, event string) {
	if _, err := s.System(ctx, roomID, message.KindSystem, event, map[string]string{"event": event}); err != nil {
		s.log.Warn("service: lifecycle message", "room", roomID, "event", event, "err", err)
	}
}

// announce turns one room's arrivals and departures into low-priority
// enter/leave messages: a few by name, more summarized ("+37 joined").
func (s *Service) announce(ctx context.Context, sum presence.Summary) {
	add := func(kind message.Kind, u *message.User, text string, count int) {
		m := &message.Message{ID: s.newID(), Room: sum.Room, Kind: kind, Scope: message.ScopeRoom, User: u, Text: text}
		if count > 0 {
			m.Data = []byte(`{"count":` + strconv.Itoa(count) + `}`)
		}
		m.Priority = message.ComputePriority(m)
		if err := s.appendRoom(ctx, m, nil); err != nil {
			s.log.Debug("service: presence message", "room", sum.Room, "err", err)
		}
	}
	if sum.Joined > 0 {
		if sum.Joined == len(sum.Named) {
			for _, mb := range sum.Named {
				add(message.KindEnter, &message.User{ID: mb.UserID, Name: mb.Name, Level: mb.Level}, mb.Name+" joined", 0)
			}
		} else {
			add(message.KindEnter, nil, "+"+strconv.Itoa(sum.Joined)+" joined", sum.Joined)
		}
	}
	if sum.Left > 0 {
		add(message.KindLeave, nil, "-"+strconv.Itoa(sum.Left)+" left", sum.Left)
	}
}

// announcer writes the presence feed's summaries every PresenceEvery until
// Close: the store writes run here, on the service's own goroutine, never on
// the fan-out's tick.
func (s *Service) announcer(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.PresenceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, sum := range s.feed.TakePresence() {
				s.announce(ctx, sum)
			}
		}
	}
}

// Close stops the presence announcer (if any) and waits for it. It is safe
// to call more than once.
func (s *Service) Close() {
	s.stop()
	<-s.done
}
