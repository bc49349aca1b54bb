package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/config"
	"roomcast/internal/errs"
	"roomcast/internal/fanout"
	"roomcast/internal/message"
	"roomcast/internal/metrics"
	"roomcast/internal/presence"
	"roomcast/internal/quiz"
	"roomcast/internal/room"
	"roomcast/internal/route"
	"roomcast/internal/service"
	"roomcast/internal/store"
	"roomcast/internal/ws"
)

// The fakes below stand in, through the gateway's own interfaces, for the
// parts whose behaviour is other packages' to test; the gateway's tests
// check what it does with requests: routing, identities, statuses, bodies.

type fakeRooms struct {
	mu    sync.Mutex
	rooms map[string]room.Room
}

func (f *fakeRooms) Create(_ context.Context, anchor, title, id string) (room.Room, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rooms {
		if r.AnchorID == anchor {
			return r, false, nil
		}
	}
	r := room.Room{ID: id, Title: title, AnchorID: anchor, StreamKey: "rk_" + id}
	f.rooms[id] = r
	return r, true, nil
}

func (f *fakeRooms) Get(_ context.Context, id string, withKey bool) (room.Room, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rooms[id]
	if !ok {
		return room.Room{}, errs.New(errs.RoomNotFound, "no such room")
	}
	if !withKey {
		r.StreamKey = ""
	}
	return r, nil
}

func (f *fakeRooms) Exists(ctx context.Context, id string) (bool, error) {
	_, err := f.Get(ctx, id, false)
	return err == nil, nil
}

func (f *fakeRooms) List(context.Context) ([]room.Room, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []room.Room
	for _, r := range f.rooms {
		r.StreamKey = ""
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeRooms) IDs(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.rooms {
		out = append(out, id)
	}
	return out, nil
}

func (f *fakeRooms) ResetKey(_ context.Context, id string) (string, error) {
	return "rk_new_" + id, nil
}

// sendCall is one call of the fake service's Send.
type sendCall struct {
	id   service.Identity
	room string
	req  message.Request
}

type fakeService struct {
	mu     sync.Mutex
	sends  []sendCall
	err    error // Send's answer, when set
	kicked map[string]bool
	panics bool
	seq    uint64
}

func (f *fakeService) Send(_ context.Context, id service.Identity, roomID string, req *message.Request) (service.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panics {
		panic("boom")
	}
	f.sends = append(f.sends, sendCall{id: id, room: roomID, req: *req})
	if f.err != nil {
		return service.Result{}, f.err
	}
	if req.Kind == message.KindLike {
		return service.Result{Msg: &message.Message{ID: "like-1", Kind: message.KindLike}, Likes: 42}, nil
	}
	f.seq++
	return service.Result{Msg: &message.Message{ID: "m-1", Seq: f.seq, Kind: req.Kind, TS: 1700, Priority: 130}}, nil
}

// set changes the fake's behaviour under its lock.
func (f *fakeService) set(change func(f *fakeService)) {
	f.mu.Lock()
	change(f)
	f.mu.Unlock()
}

func (f *fakeService) calls() []sendCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sendCall(nil), f.sends...)
}

func (f *fakeService) Gifts() *message.Catalogue { return message.NewCatalogue(nil) }
func (f *fakeService) CanModerate(_ context.Context, id service.Identity, roomID string) error {
	if id.Admin || id.Claims.Sub == "anchor-"+roomID {
		return nil
	}
	return errs.New(errs.Forbidden, "not yours")
}
func (f *fakeService) Kick(ctx context.Context, by service.Identity, roomID, _ string, _ time.Duration) error {
	return f.CanModerate(ctx, by, roomID)
}
func (f *fakeService) Mute(ctx context.Context, by service.Identity, roomID, _ string, _ time.Duration) error {
	return f.CanModerate(ctx, by, roomID)
}
func (f *fakeService) Unmute(ctx context.Context, by service.Identity, roomID, _ string) error {
	return f.CanModerate(ctx, by, roomID)
}
func (f *fakeService) Retract(ctx context.Context, by service.Identity, roomID, msgID string) (*message.Message, error) {
	if err := f.CanModerate(ctx, by, roomID); err != nil {
		return nil, err
	}
	return &message.Message{ID: "r-1", Seq: 9, Kind: message.KindRetract, Ref: msgID}, nil
}
func (f *fakeService) Kicked(_ context.Context, _, user string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kicked[user], nil
}

// fakeNode records attaches and polls; attached connections get what the
// test sends to their sink.
type fakeNode struct {
	mu       sync.Mutex
	conns    []*fanout.Conn
	polls    []fanout.PollQuery
	answer   fanout.PollAnswer
	pollErr  error
	detached int
	idents   []presence.Member
}

func (f *fakeNode) Attach(_ context.Context, c *fanout.Conn, _ uint64, _ bool) error {
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	return nil
}
func (f *fakeNode) Detach(*fanout.Conn) { f.mu.Lock(); f.detached++; f.mu.Unlock() }
func (f *fakeNode) Identify(_ *fanout.Conn, m presence.Member) {
	f.mu.Lock()
	f.idents = append(f.idents, m)
	f.mu.Unlock()
}
func (f *fakeNode) Poll(_ context.Context, _ string, q fanout.PollQuery) (fanout.PollAnswer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls = append(f.polls, q)
	return f.answer, f.pollErr
}
func (f *fakeNode) LikesTotal(context.Context, string) (int64, error) { return 7, nil }
func (f *fakeNode) RoomOnline(string) (int, bool)                     { return 0, false }

func (f *fakeNode) set(change func(f *fakeNode)) {
	f.mu.Lock()
	change(f)
	f.mu.Unlock()
}

func (f *fakeNode) poll(i int) fanout.PollQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls[i]
}

func (f *fakeNode) attached() []*fanout.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fanout.Conn(nil), f.conns...)
}

type fakeStore struct {
	mu sync.Mutex
	kv map[string]string
}

func (f *fakeStore) Setting(_ context.Context, key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.kv[key]
	if !ok {
		return "", store.ErrNotFound
	}
	return v, nil
}
func (f *fakeStore) SetSetting(_ context.Context, key, value string) error {
	f.mu.Lock()
	f.kv[key] = value
	f.mu.Unlock()
	return nil
}
func (f *fakeStore) TakeSetting(ctx context.Context, key string) (string, error) {
	v, err := f.Setting(ctx, key)
	f.mu.Lock()
	delete(f.kv, key)
	f.mu.Unlock()
	return v, err
}
func (f *fakeStore) DeleteSettingsBefore(context.Context, string, int64) (int64, error) {
	return 0, nil
}

// fakeQuiz answers every quiz call with "not found".
// fakeQuiz has no activities; its grab bucket is empty while throttled
// (nil: never) is set.
type fakeQuiz struct{ throttled *atomic.Bool }

var errNoQuiz = errs.New(errs.NotFound, "no such activity")

func (fakeQuiz) AnswerInRoom(context.Context, string, string, int, int) (string, []byte, error) {
	return "", nil, errNoQuiz
}
func (fakeQuiz) AnswerNow(string, string, string, int, int) (string, []byte, bool, error) {
	return "", nil, false, nil // nothing decided inline: Answer/AnswerInRoom answer
}
func (fakeQuiz) Answer(context.Context, string, string, int, int) ([]byte, error) {
	return nil, errNoQuiz
}
func (fakeQuiz) Create(context.Context, quiz.Caller, *quiz.CreateRequest) (*quiz.View, error) {
	return nil, errNoQuiz
}
func (fakeQuiz) Get(context.Context, quiz.Caller, string) (*quiz.View, error) { return nil, errNoQuiz }
func (fakeQuiz) List(context.Context, string) ([]*quiz.View, error)           { return nil, nil }
func (fakeQuiz) Start(context.Context, quiz.Caller, string) (*quiz.View, error) {
	return nil, errNoQuiz
}
func (fakeQuiz) Push(context.Context, quiz.Caller, string, int) (*quiz.View, error) {
	return nil, errNoQuiz
}
func (fakeQuiz) Reveal(context.Context, quiz.Caller, string, int) (*quiz.View, error) {
	return nil, errNoQuiz
}
func (fakeQuiz) Counts(context.Context, quiz.Caller, string, int) (quiz.Reveal, error) {
	return quiz.Reveal{}, errNoQuiz
}
func (fakeQuiz) Winners(context.Context, string) ([]store.Prize, int64, error) {
	return nil, 0, errNoQuiz
}
func (fakeQuiz) GrantCards(context.Context, string, int) (int, error)  { return 0, nil }
func (fakeQuiz) Cards(context.Context, string) (int, error)            { return 0, nil }
func (fakeQuiz) Prizes(context.Context, string) ([]store.Prize, error) { return nil, nil }
func (fakeQuiz) PrizesTotal(context.Context, string) (int64, error)    { return 0, nil }
func (fakeQuiz) StartRain(context.Context, quiz.Caller, string, int) (*quiz.RainView, error) {
	return nil, errNoQuiz
}
func (fakeQuiz) GrabTaps(context.Context, string, string, int, int) (quiz.GrabResult, error) {
	return quiz.GrabResult{}, errNoQuiz
}
func (fakeQuiz) Rain(context.Context, string, int) (*quiz.RainView, error) { return nil, errNoQuiz }
func (q fakeQuiz) Admit(taps int) int {
	if q.throttled != nil && q.throttled.Load() {
		return 0
	}
	return max(taps, 1)
}
func (fakeQuiz) GrabAdmitted(context.Context, string, string, int, int, int) (quiz.GrabResult, error) {
	return quiz.GrabResult{}, errs.New(errs.NotFound, "no such activity (admitted)")
}

const adminKey = "ak_test"

// rig is a gateway served over real HTTP, on fakes.
type rig struct {
	srv    *httptest.Server
	gw     *Gateway
	signer *auth.Signer
	rooms  *fakeRooms
	svc    *fakeService
	node   *fakeNode
	store  *fakeStore
	bus    *bus.Memory
	pres   *presence.Memory
	quiz   fakeQuiz
}

func newRig(t *testing.T, tune func(*config.Config)) *rig {
	t.Helper()
	cfg := config.Default()
	if tune != nil {
		tune(cfg)
	}
	signer, err := auth.NewSigner("test secret")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{signer: signer, rooms: &fakeRooms{rooms: map[string]room.Room{"a": {ID: "a", Title: "A", AnchorID: "anchor-a"}}},
		svc: &fakeService{kicked: map[string]bool{}}, node: &fakeNode{}, store: &fakeStore{kv: map[string]string{}},
		bus: bus.NewMemory(), pres: presence.NewMemory(time.Minute), quiz: fakeQuiz{throttled: new(atomic.Bool)}}
	m := metrics.New()
	wsh, err := NewWSHandler(WSDeps{Signer: signer, AdminKey: adminKey, Service: r.svc, Quiz: r.quiz, Node: r.node,
		Presence: r.pres, MaxFrame: cfg.MaxFrame, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	wss, err := ws.NewServer(ws.Config{CheckOrigin: OriginPolicy(cfg.Origins), Heartbeat: time.Minute}, wsh)
	if err != nil {
		t.Fatal(err)
	}
	r.gw, err = New(context.Background(), Deps{Config: cfg, Signer: signer, AdminKey: adminKey, Rooms: r.rooms, Service: r.svc,
		Quiz: r.quiz, Node: r.node, Presence: r.pres, Store: r.store, Bus: r.bus, WS: wss, WSHandler: wsh,
		Router: route.New(route.DefaultRules()), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(r.gw.Handler())
	t.Cleanup(func() {
		r.srv.Close()
		_ = wss.Shutdown(context.Background())
		r.pres.Close()
		r.bus.Close()
	})
	return r
}

func (r *rig) token(t *testing.T, sub, role string, level int) string {
	t.Helper()
	tok, err := r.signer.Sign(auth.Claims{Sub: sub, Name: "name-" + sub, Level: level, Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call makes one request; body (if any) is sent as is.
func (r *rig) call(t *testing.T, method, path, tok, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

var errPlain = errors.New("connection refused")
