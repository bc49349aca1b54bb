package quiz

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"roomcast/internal/bus"
	"roomcast/internal/errs"
	"roomcast/internal/message"
	"roomcast/internal/presence"
	"roomcast/internal/room"
	"roomcast/internal/store"
)

// Message kinds of the quiz: must-deliver function messages whose fields are
// in data (issue 12).
const (
	KindQuestion = message.KindQuizQuestion
	KindReveal   = message.KindQuizReveal
	KindEnd      = message.KindQuizEnd
)

// PrizeKind is the kind of the prizes a quiz pays.
const PrizeKind = "quiz"

// evEnroll is the control event that tells every node question 1 was pushed:
// each enrolls the users it holds in the room.
const evEnroll bus.EventType = "quiz_enroll"

// evCue is the control event that asks every node to write a question's cue
// into the room's live stream: only the node holding the publisher can.
const evCue bus.EventType = "quiz_cue"

// Store is what the quiz keeps in SQL.
type Store interface {
	CreateActivity(ctx context.Context, rec store.ActivityRecord) error
	Activity(ctx context.Context, id string) (store.ActivityRecord, error)
	RoomActivities(ctx context.Context, room string) ([]store.ActivityRecord, error)
	SetActivityStatus(ctx context.Context, id, status string) error
	GrantCards(ctx context.Context, user string, n int) (int, error)
	Cards(ctx context.Context, users []string) (map[string]int, error)
	Settle(ctx context.Context, activity, status string, prizes []store.Prize, cardUsers []string, at time.Time) error
	ActivityPrizes(ctx context.Context, activity, kind string) ([]store.Prize, error)
	UserPrizes(ctx context.Context, user string) ([]store.Prize, error)
	PrizesTotal(ctx context.Context, user string) (int64, error)
	SavePackets(ctx context.Context, activity string, k int, ps []store.RainPacket) error
	RainPackets(ctx context.Context, activity string, k int) ([]store.RainPacket, error)
}

// Rooms is what the quiz needs of the room registry.
type Rooms interface {
	Get(ctx context.Context, id string, withKey bool) (room.Room, error)
}

// Announcer appends must-deliver function messages to a room's timeline
// (the message service).
type Announcer interface {
	System(ctx context.Context, roomID string, kind message.Kind, text string, data any) (*message.Message, error)
}

// Locals lists the identified users this node holds in a room that arrived
// at or before t (the presence).
type Locals interface {
	Local(room string, t time.Time) []presence.Member
}

// Cues writes a cue into a room's live stream (the media hub): an FLV/RTMP
// script-data tag and an HLS date range. It returns the stream's clock at
// the cue (video_ms) and whether the room is live.
type Cues interface {
	Cue(room, name string, data map[string]any) (videoMS int64, ok bool)
}

// Config tunes the quiz.
type Config struct {
	// Delay is added to every answer window: the allowance for the stream's
	// latency (--quiz-delay; the flag's default is 3s, zero here is none).
	Delay time.Duration
	// Revivals is how many revival cards a player may use per activity
	// (--quiz-revivals; the flag's default is 1, zero here is none).
	Revivals int
	// RainRate is the grabs per second this node admits (--rain-rate; the
	// flag's default is 2000, zero here admits everything).
	RainRate int
}

// Deps are the quiz's collaborators; Cues may be nil (no stream cues).
type Deps struct {
	State  State
	Store  Store
	Rooms  Rooms
	Msgs   Announcer
	Bus    bus.Bus
	Locals Locals
	Cues   Cues
	// Online counts a room's audience (the presence): the rain's throttle.
	Online Online
	Log    *slog.Logger
}

// Online counts the users in a room, on every node.
type Online interface {
	Count(ctx context.Context, room string) (int, error)
}

// Service is the quiz's logic: the only way transports reach the State.
type Service struct {
	cfg    Config
	d      Deps
	node   string
	now    func() time.Time
	cancel func()
	wg     sync.WaitGroup // enrollments started by control events
	ctx    context.Context
	stop   context.CancelFunc

	mu      sync.Mutex
	acts    map[string]*Activity   // immutable definitions by id; guarded by mu
	aeads   map[string]cipher.AEAD // "{activity}:{n}" → the question's cipher; guarded by mu
	active  map[string]string      // room → its running activity, as last seen; guarded by mu
	closing map[string]bool        // "{activity}:{k}" rains this node is settling; guarded by mu

	bucket *Bucket // grabs admitted by this node
	local  bool    // the State decides in this process's memory (AnswerNow)
}

// Caller is who calls the quiz.
type Caller struct {
	User  string
	Admin bool
}

// New builds the quiz service and subscribes to the enrollment events.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if cfg.Revivals < 0 || cfg.Delay < 0 || cfg.RainRate < 0 {
		return nil, errors.New("quiz: delay, revivals and rain rate must not be negative")
	}
	s := &Service{cfg: cfg, d: d, node: randomHex(6), now: time.Now, acts: map[string]*Activity{}, active: map[string]string{},
		aeads: map[string]cipher.AEAD{}, closing: map[string]bool{}, bucket: NewBucket(cfg.RainRate)}
	_, s.local = d.State.(*Memory)
	s.ctx, s.stop = context.WithCancel(context.Background())
	cancel, err := d.Bus.Subscribe(bus.Control, s.onControl)
	if err != nil {
		return nil, fmt.Errorf("quiz: subscribe: %w", err)
	}
	s.cancel = cancel
	return s, nil
}

// Close stops the subscription and waits for running enrollments.
func (s *Service) Close() error {
	s.cancel()
	s.stop()
	s.wg.Wait()
	return s.d.State.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func unavailable(err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return e
	}
	return &errs.Error{Code: errs.Unavailable, Message: "quiz store unavailable, try again: " + err.Error()}
}

// activity returns the definition of id (cached: definitions never change).
func (s *Service) activity(ctx context.Context, id string) (*Activity, error) {
	s.mu.Lock()
	a := s.acts[id]
	s.mu.Unlock()
	if a != nil {
		return a, nil
	}
	rec, err := s.d.Store.Activity(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "no such activity")
	}
	if err != nil {
		return nil, unavailable(err)
	}
	a = &Activity{}
	if err := json.Unmarshal(rec.Definition, a); err != nil {
		return nil, fmt.Errorf("quiz: activity %s: %w", id, err)
	}
	s.mu.Lock()
	if len(s.acts) > 10000 {
		clear(s.acts)
	}
	s.acts[id] = a
	s.mu.Unlock()
	return a, nil
}

// live returns id's live state, creating it from the definition if the State
// has none (a scheduled activity after a restart, or expired keys).
func (s *Service) live(ctx context.Context, a *Activity) (Live, error) {
	l, err := s.d.State.Live(ctx, a.ID)
	if errors.Is(err, ErrUnknown) {
		if err = s.d.State.Init(ctx, a.rules(s.cfg.Delay, s.cfg.Revivals)); err != nil {
			return l, unavailable(err)
		}
		l, err = s.d.State.Live(ctx, a.ID)
	}
	if err != nil {
		return l, unavailable(err)
	}
	return l, nil
}

// operator checks that c may drive a's room: an admin or the room's anchor.
func (s *Service) operator(ctx context.Context, c Caller, roomID string) error {
	if c.Admin {
		return nil
	}
	if c.User == "" {
		return errs.New(errs.Unauthorized, "a token is required (Authorization: Bearer TOKEN)")
	}
	r, err := s.d.Rooms.Get(ctx, roomID, false)
	if err != nil {
		return err
	}
	if r.AnchorID != c.User {
		return errs.New(errs.Forbidden, "only the room's anchor or an admin may run its activities")
	}
	return nil
}

// Create validates and stores a new activity.
func (s *Service) Create(ctx context.Context, c Caller, req *CreateRequest) (*View, error) {
	a, err := req.Validate()
	if err != nil {
		return nil, err
	}
	if err := s.operator(ctx, c, a.Room); err != nil {
		return nil, err
	}
	a.ID, a.CreatedBy, a.CreatedAt = "q"+randomHex(8), c.User, s.now().UTC().Truncate(time.Millisecond)
	a.Secret = make([]byte, 32)
	_, _ = rand.Read(a.Secret)
	def, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	if err := s.d.Store.CreateActivity(ctx, store.ActivityRecord{ID: a.ID, Room: a.Room, Status: StatusScheduled,
		StartsAt: a.StartsAt, CreatedAt: a.CreatedAt, Definition: def}); err != nil {
		return nil, unavailable(err)
	}
	l, err := s.live(ctx, a)
	if err != nil {
		return nil, err
	}
	return s.view(a, l, true), nil
}

// Get returns an activity as c may see it.
func (s *Service) Get(ctx context.Context, c Caller, id string) (*View, error) {
	a, err := s.activity(ctx, id)
	if err != nil {
		return nil, err
	}
	l, err := s.live(ctx, a)
	if err != nil {
		return nil, err
	}
	return s.view(a, l, c.User != "" && s.operator(ctx, c, a.Room) == nil), nil
}

// List returns a room's activities as anyone sees them.
func (s *Service) List(ctx context.Context, roomID string) ([]*View, error) {
	if _, err := s.d.Rooms.Get(ctx, roomID, false); err != nil {
		return nil, err
	}
	recs, err := s.d.Store.RoomActivities(ctx, roomID)
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]*View, 0, len(recs))
	for _, rec := range recs {
		v, err := s.Get(ctx, Caller{}, rec.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// step runs an operator step's common part: the activity, the caller's
// right to drive it.
func (s *Service) step(ctx context.Context, c Caller, id string) (*Activity, error) {
	a, err := s.activity(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.operator(ctx, c, a.Room); err != nil {
		return nil, err
	}
	if _, err := s.live(ctx, a); err != nil {
		return nil, err
	}
	return a, nil
}

// Start moves the activity to running.
func (s *Service) Start(ctx context.Context, c Caller, id string) (*View, error) {
	a, err := s.step(ctx, c, id)
	if err != nil {
		return nil, err
	}
	l, changed, err := s.d.State.Start(ctx, id)
	if err != nil {
		return nil, unavailable(err)
	}
	if changed {
		if err := s.d.Store.SetActivityStatus(ctx, id, StatusRunning); err != nil {
			s.d.Log.Warn("quiz: status", "activity", id, "err", err)
		}
	}
	s.setActive(a.Room, id)
	return s.view(a, l, true), nil
}

func (s *Service) setActive(roomID, id string) {
	s.mu.Lock()
	if id == "" {
		delete(s.active, roomID)
	} else {
		s.active[roomID] = id
	}
	s.mu.Unlock()
}

// announce sends step's message once: the first caller to claim the step
// appends it; a failed append gives the claim back.
func (s *Service) announce(ctx context.Context, a *Activity, step string, kind message.Kind, data any) error {
	first, err := s.d.State.Mark(ctx, a.ID, step)
	if err != nil {
		return unavailable(err)
	}
	if !first {
		return nil
	}
	if _, err := s.d.Msgs.System(ctx, a.Room, kind, "", data); err != nil {
		if uerr := s.d.State.Unmark(ctx, a.ID, step); uerr != nil {
			s.d.Log.Warn("quiz: unmark", "activity", a.ID, "step", step, "err", uerr)
		}
		return unavailable(err)
	}
	return nil
}

// QuestionData is a quiz_question message's data.
type QuestionData struct {
	Activity string   `json:"activity"`
	N        int      `json:"n"`
	Count    int      `json:"count"`
	Text     string   `json:"text"`
	Options  []string `json:"options"`
	AnswerMS int64    `json:"answer_ms"`
	Deadline int64    `json:"deadline"`
	KeyHash  string   `json:"key_hash"`
	VideoMS  int64    `json:"video_ms"`
}

// Push opens question n and sends it to the room (with a cue in the live
// stream); pushing question 1 enrolls the players.
func (s *Service) Push(ctx context.Context, c Caller, id string, n int) (*View, error) {
	a, err := s.step(ctx, c, id)
	if err != nil {
		return nil, err
	}
	l, changed, err := s.d.State.Push(ctx, id, n, s.now().UnixMilli())
	if err != nil {
		return nil, unavailable(err)
	}
	step := "push:" + strconv.Itoa(n)
	var videoMS int64
	if changed && s.d.Cues != nil {
		videoMS, _ = s.d.Cues.Cue(a.Room, CueName, map[string]any{"activity": id, "n": n})
		if err := s.d.Bus.Publish(ctx, bus.Control, bus.Event{Type: evCue, Room: a.Room,
			Data: []byte(s.node + " " + id + " " + strconv.Itoa(n))}); err != nil {
			s.d.Log.Warn("quiz: cue event", "activity", id, "err", err)
		}
	}
	if changed && n == 1 {
		if err := s.enrollLocal(ctx, a, l.PushedAt); err != nil {
			return nil, err
		}
		if err := s.d.Bus.Publish(ctx, bus.Control, bus.Event{Type: evEnroll, Room: a.Room,
			Data: []byte(s.node + " " + id + " " + strconv.FormatInt(l.PushedAt, 10))}); err != nil {
			return nil, unavailable(err)
		}
	}
	q := a.Questions[n-1]
	err = s.announce(ctx, a, step, KindQuestion, QuestionData{Activity: id, N: n, Count: len(a.Questions), Text: q.Text,
		Options: q.Options, AnswerMS: a.AnswerMS, Deadline: l.Deadline, KeyHash: KeyHash(QuestionKey(a.Secret, id, n)), VideoMS: videoMS})
	if err != nil {
		return nil, err
	}
	s.setActive(a.Room, id)
	return s.view(a, l, true), nil
}

// enrollLocal enrolls the users this node holds in a's room that arrived by
// pushedAt, with their revival cards.
func (s *Service) enrollLocal(ctx context.Context, a *Activity, pushedAt int64) error {
	ms := s.present(ctx, a, pushedAt)
	for len(ms) > 0 {
		k := min(len(ms), 1000)
		users := make([]string, k)
		for i, m := range ms[:k] {
			users[i] = m.UserID
		}
		ms = ms[k:]
		cards, err := s.d.Store.Cards(ctx, users)
		if err != nil {
			return unavailable(err)
		}
		ps := make([]Player, len(users))
		for i, u := range users {
			ps[i] = Player{User: u, Cards: cards[u]}
		}
		if _, err := s.d.State.Enroll(ctx, a.ID, ps); err != nil {
			if errs.From(err).Code == CodeNotRunning {
				return nil // question 1 was revealed meanwhile: enrollment is over
			}
			return unavailable(err)
		}
	}
	return nil
}

// CueName is the script-data name of the question cue in the live stream.
const CueName = "onQuizQuestion"

// pushTime is the end of the millisecond a question was pushed in: sessions
// that arrived in it count as present (the push time is kept in ms, the
// sessions' arrival in ns).
func pushTime(ms int64) time.Time { return time.UnixMilli(ms + 1).Add(-time.Nanosecond) }

// present lists the users this node held in a's room at pushedAt who may
// play: everyone but the room's anchor, who hosts the show.
func (s *Service) present(ctx context.Context, a *Activity, pushedAt int64) []presence.Member {
	ms := s.d.Locals.Local(a.Room, pushTime(pushedAt))
	r, err := s.d.Rooms.Get(ctx, a.Room, false)
	if err != nil {
		return ms
	}
	out := ms[:0]
	for _, m := range ms {
		if m.UserID != r.AnchorID {
			out = append(out, m)
		}
	}
	return out
}

// onControl follows another node's push: it writes the cue into the stream
// if this node holds the publisher, and enrolls this node's users at
// question 1.
func (s *Service) onControl(ev bus.Event) {
	f := strings.Fields(string(ev.Data))
	if len(f) != 3 || f[0] == s.node || (ev.Type != evEnroll && ev.Type != evCue) {
		return
	}
	if ev.Type == evCue {
		if n, err := strconv.Atoi(f[2]); err == nil && s.d.Cues != nil {
			s.d.Cues.Cue(ev.Room, CueName, map[string]any{"activity": f[1], "n": n})
		}
		return
	}
	pushedAt, _ := strconv.ParseInt(f[2], 10, 64)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		a, err := s.activity(ctx, f[1])
		if err == nil {
			err = s.enrollLocal(ctx, a, pushedAt)
		}
		if err != nil {
			s.d.Log.Warn("quiz: enroll", "activity", f[1], "err", err)
		}
		s.setActive(ev.Room, f[1])
	}()
}

// RevealData is a quiz_reveal message's data.
type RevealData struct {
	Activity   string  `json:"activity"`
	N          int     `json:"n"`
	Answer     int     `json:"answer"`
	Key        string  `json:"key"`
	Counts     []int64 `json:"counts"`
	Alive      int64   `json:"alive"`
	Eliminated int64   `json:"eliminated"`
}

// EndData is a quiz_end message's data.
type EndData struct {
	Activity       string `json:"activity"`
	Winners        int    `json:"winners"`
	PrizeEachCents int64  `json:"prize_each_cents"`
}

// Reveal closes question n, sends its answer, key and tally; after the last
// question it ends the activity and settles it.
func (s *Service) Reveal(ctx context.Context, c Caller, id string, n int) (*View, error) {
	a, err := s.step(ctx, c, id)
	if err != nil {
		return nil, err
	}
	r, l, _, err := s.d.State.Reveal(ctx, id, n, s.now().UnixMilli())
	if err != nil {
		return nil, unavailable(err)
	}
	err = s.announce(ctx, a, "reveal:"+strconv.Itoa(n), KindReveal, RevealData{Activity: id, N: n, Answer: a.Questions[n-1].Answer,
		Key: base64.StdEncoding.EncodeToString(QuestionKey(a.Secret, id, n)), Counts: r.Counts, Alive: r.Alive, Eliminated: r.Eliminated})
	if err != nil {
		return nil, err
	}
	if n == len(a.Questions) && (l.Status == StatusEnded || l.Status == StatusSettled) {
		if l, err = s.finish(ctx, a); err != nil {
			return nil, err
		}
		s.setActive(a.Room, "")
	}
	return s.view(a, l, true), nil
}

// finish sends quiz_end and settles the activity (each once).
func (s *Service) finish(ctx context.Context, a *Activity) (Live, error) {
	winners, err := s.d.State.Winners(ctx, a.ID)
	if err != nil {
		return Live{}, unavailable(err)
	}
	var each int64
	if len(winners) > 0 {
		each = a.PrizeCents / int64(len(winners))
	}
	if err := s.announce(ctx, a, "end", KindEnd, EndData{Activity: a.ID, Winners: len(winners), PrizeEachCents: each}); err != nil {
		return Live{}, err
	}
	if err := s.settle(ctx, a, winners); err != nil {
		return Live{}, err
	}
	return s.d.State.Live(ctx, a.ID)
}

// settle writes the results to SQL (idempotent by unique keys), then marks
// the activity settled.
func (s *Service) settle(ctx context.Context, a *Activity, winners []string) error {
	revived, err := s.d.State.Revived(ctx, a.ID)
	if err != nil {
		return unavailable(err)
	}
	split := Split(a.PrizeCents, winners)
	prizes := make([]store.Prize, len(split))
	for i, p := range split {
		prizes[i] = store.Prize{Activity: a.ID, User: p.User, AmountCents: p.AmountCents, Kind: PrizeKind}
	}
	if err := s.d.Store.Settle(ctx, a.ID, StatusSettled, prizes, revived, s.now()); err != nil {
		return unavailable(err)
	}
	if _, err := s.d.State.Settle(ctx, a.ID); err != nil {
		return unavailable(err)
	}
	return nil
}

// Counts is question n's live tally (operator).
func (s *Service) Counts(ctx context.Context, c Caller, id string, n int) (Reveal, error) {
	if _, err := s.step(ctx, c, id); err != nil {
		return Reveal{}, err
	}
	r, err := s.d.State.Counts(ctx, id, n)
	if err != nil {
		return Reveal{}, unavailable(err)
	}
	return r, nil
}
