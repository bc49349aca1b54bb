package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/auth"
	"roomcast/internal/bus"
	"roomcast/internal/errs"
	"roomcast/internal/likes"
	"roomcast/internal/message"
	"roomcast/internal/metrics"
	"roomcast/internal/moderation"
	"roomcast/internal/presence"
	"roomcast/internal/room"
	"roomcast/internal/testutil"
	"roomcast/internal/timeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRooms is the registry through the service's Rooms interface (the
// registry's own behaviour is package room's to test).
type fakeRooms map[string]room.Room

func (f fakeRooms) Get(_ context.Context, id string, _ bool) (room.Room, error) {
	r, ok := f[id]
	if !ok {
		return room.Room{}, errs.New(errs.RoomNotFound, "no such room")
	}
	return r, nil
}

func (f fakeRooms) IDs(context.Context) ([]string, error) {
	var ids []string
	for id := range f {
		ids = append(ids, id)
	}
	return ids, nil
}

// feed is a presence feed handing out what the test puts in it.
type feed struct {
	mu   sync.Mutex
	sums []presence.Summary
}

func (f *feed) put(s presence.Summary) { f.mu.Lock(); f.sums = append(f.sums, s); f.mu.Unlock() }

func (f *feed) TakePresence() []presence.Summary {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.sums
	f.sums = nil
	return out
}

// clock is a session clock at a fixed position; archive records what it gets.
type clock struct{ ms int64 }

func (c clock) Position(_ context.Context, room string) (string, int64, bool) {
	return "s-" + room, c.ms, room == "live"
}

type archive struct {
	mu    sync.Mutex
	msgs  map[string][]*message.Message
	likes int // likes counted while live
}

func (a *archive) Add(session string, m *message.Message) {
	a.mu.Lock()
	a.msgs[session] = append(a.msgs[session], m)
	a.mu.Unlock()
}

func (a *archive) Like(session, room string, ms, total int64) {
	a.mu.Lock()
	a.likes++
	a.mu.Unlock()
}

type rig struct {
	svc     *Service
	tl      *timeline.Memory
	recalls *recallCounter
	bus     *bus.Memory
	mod     *moderation.Memory
	feed    *feed
	arch    *archive
}

// newRig builds a service on the real in-memory seams (timeline, bus, likes,
// moderation) and fakes for the parts that are other layers' business.
func newRig(t *testing.T, cfg Config, rate int) *rig {
	t.Helper()
	r := &rig{tl: timeline.NewMemory(timeline.Retention{}, nil), bus: bus.NewMemory(), mod: moderation.NewMemory(rate, time.Minute),
		feed: &feed{}, arch: &archive{msgs: map[string][]*message.Message{}}}
	rooms := fakeRooms{
		"a":    {ID: "a", AnchorID: "anchor-a"},
		"b":    {ID: "b", AnchorID: "anchor-b"},
		"live": {ID: "live", AnchorID: "anchor-live"},
	}
	r.recalls = &recallCounter{Memory: r.tl}
	svc, err := New(cfg, Deps{Rooms: rooms, Timeline: r.recalls, Bus: r.bus, Likes: likes.NewMemory(), Mod: r.mod,
		Filter: moderation.NewFilter("badword", false), Gifts: message.NewCatalogue(nil), Metrics: metrics.New(),
		Presence: r.feed, Clock: clock{ms: 5000}, Archive: r.arch})
	if err != nil {
		t.Fatal(err)
	}
	r.svc = svc
	t.Cleanup(func() { svc.Close(); r.bus.Close() })
	return r
}

// record subscribes to topic for the test and returns what arrived so far.
func (r *rig) record(t *testing.T, topic bus.Topic) func() []bus.Event {
	t.Helper()
	var mu sync.Mutex
	var got []bus.Event
	unsub, err := r.bus.Subscribe(topic, func(ev bus.Event) { mu.Lock(); got = append(got, ev); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	return func() []bus.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]bus.Event(nil), got...)
	}
}

func viewer(sub string) Identity {
	return Identity{Claims: auth.Claims{Sub: sub, Name: "name-" + sub, Level: 7, Role: auth.RoleViewer}}
}

var admin = Identity{Admin: true, Claims: auth.Claims{Sub: "admin", Role: auth.RoleAdmin}}

// messages returns room's stored messages.
func (r *rig) messages(t *testing.T, roomID string) []*message.Message {
	t.Helper()
	page, err := r.tl.Range(context.Background(), roomID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return page.Msgs
}

func TestSendStoresInOrderWithTheSender(t *testing.T) {
	r := newRig(t, Config{}, 100)
	ctx := context.Background()
	for i, text := range []string{"one", "two"} {
		res, err := r.svc.Send(ctx, viewer("u1"), "a", &message.Request{Kind: message.KindChat, Text: text})
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.Seq != uint64(i+1) || res.Msg.ID == "" || res.Msg.TS == 0 {
			t.Fatalf("send %d: %+v", i, res.Msg)
		}
	}
	msgs := r.messages(t, "a")
	if len(msgs) != 2 || msgs[0].Text != "one" || msgs[1].Text != "two" {
		t.Fatalf("stored %+v", msgs)
	}
	m := msgs[0]
	if m.User == nil || m.User.ID != "u1" || m.User.Name != "name-u1" || m.User.Level != 7 || m.Scope != message.ScopeRoom {
		t.Fatalf("sender: %+v %+v", m, m.User)
	}
	if msgs[0].ID == msgs[1].ID {
		t.Fatal("message ids repeat")
	}
	if _, err := r.svc.Send(ctx, viewer("u1"), "nope", &message.Request{Kind: message.KindChat, Text: "x"}); testutil.ErrCode(err) != errs.RoomNotFound {
		t.Fatalf("unknown room: %v", err)
	}
	if _, err := r.svc.Send(ctx, viewer("u1"), "a", &message.Request{Kind: message.KindSystem, Text: "x"}); testutil.ErrCode(err) != errs.ForbiddenKind {
		t.Fatalf("viewer sending a system message: %v", err)
	}
}

func TestKeywordFilterBlocks(t *testing.T) {
	r := newRig(t, Config{}, 100)
	_, err := r.svc.Send(context.Background(), viewer("u1"), "a", &message.Request{Kind: message.KindChat, Text: "a BadWord here"})
	if testutil.ErrCode(err) != errs.BlockedWord {
		t.Fatalf("blocked word: %v", err)
	}
	if n := len(r.messages(t, "a")); n != 0 {
		t.Fatalf("%d messages stored after a refusal", n)
	}
}

func TestRateLimitSparesOwnersAdminsAndLikes(t *testing.T) {
	r := newRig(t, Config{}, 2)
	ctx := context.Background()
	chat := &message.Request{Kind: message.KindChat, Text: "hi"}
	for i := 0; i < 2; i++ {
		if _, err := r.svc.Send(ctx, viewer("u1"), "a", chat); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.svc.Send(ctx, viewer("u1"), "a", chat)
	var e *errs.Error
	if !errors.As(err, &e) || e.Code != errs.RateLimited || e.RetryAfterMS <= 0 {
		t.Fatalf("third send: %v", err)
	}
	// Likes are counted, not rate limited, and answer the room's total.
	for i := int64(1); i <= 3; i++ {
		res, err := r.svc.Send(ctx, viewer("u1"), "a", &message.Request{Kind: message.KindLike})
		if err != nil || res.Likes != i || res.Msg.Seq != 0 {
			t.Fatalf("like %d: %+v %v", i, res, err)
		}
	}
	for i := 0; i < 3; i++ { // the room's anchor and an admin are not limited
		if _, err := r.svc.Send(ctx, Identity{Claims: auth.Claims{Sub: "anchor-a", Role: auth.RoleAnchor}}, "a", chat); err != nil {
			t.Fatalf("anchor send %d: %v", i, err)
		}
		if _, err := r.svc.Send(ctx, admin, "a", chat); err != nil {
			t.Fatalf("admin send %d: %v", i, err)
		}
	}
}

func TestModeration(t *testing.T) {
	r := newRig(t, Config{}, 100)
	ctx := context.Background()
	anchor := Identity{Claims: auth.Claims{Sub: "anchor-a", Role: auth.RoleAnchor}}
	if err := r.svc.Kick(ctx, viewer("u2"), "a", "u1", 0); testutil.ErrCode(err) != errs.Forbidden {
		t.Fatalf("a viewer kicking: %v", err)
	}
	if err := r.svc.Kick(ctx, Identity{Claims: auth.Claims{Sub: "anchor-b", Role: auth.RoleAnchor}}, "a", "u1", 0); testutil.ErrCode(err) != errs.Forbidden {
		t.Fatalf("another room's anchor kicking: %v", err)
	}
	kicks := r.record(t, bus.Control)
	if err := r.svc.Kick(ctx, anchor, "a", "u1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if k, _ := r.svc.Kicked(ctx, "a", "u1"); !k {
		t.Fatal("kicked user not barred")
	}
	if _, err := r.svc.Send(ctx, viewer("u1"), "a", &message.Request{Kind: message.KindChat, Text: "x"}); testutil.ErrCode(err) != errs.Kicked {
		t.Fatalf("kicked user sends: %v", err)
	}
	if k := kicks(); len(k) != 1 || k[0].Type != bus.EvKick || k[0].User != "u1" || k[0].Room != "a" {
		t.Fatalf("kick events: %+v", k)
	}
	msgs := r.messages(t, "a")
	if len(msgs) != 1 || msgs[0].Kind != message.KindKick || !msgs[0].MustDeliver() {
		t.Fatalf("kick message: %+v", msgs)
	}

	if err := r.svc.Mute(ctx, admin, "a", "u3", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Send(ctx, viewer("u3"), "a", &message.Request{Kind: message.KindChat, Text: "x"}); testutil.ErrCode(err) != errs.Muted {
		t.Fatalf("muted user sends: %v", err)
	}
	if err := r.svc.Unmute(ctx, anchor, "a", "u3"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Send(ctx, viewer("u3"), "a", &message.Request{Kind: message.KindChat, Text: "back"}); err != nil {
		t.Fatalf("unmuted user sends: %v", err)
	}

	m, err := r.svc.Retract(ctx, anchor, "a", msgs[0].ID)
	if err != nil || m.Kind != message.KindRetract || m.Ref != msgs[0].ID || m.Seq == 0 {
		t.Fatalf("retract: %+v %v", m, err)
	}
	if _, err := r.svc.Retract(ctx, anchor, "a", ""); testutil.ErrCode(err) != errs.BadRequest {
		t.Fatalf("retract without an id: %v", err)
	}
}

func TestScopes(t *testing.T) {
	r := newRig(t, Config{}, 100)
	ctx := context.Background()
	users := r.record(t, bus.Users)
	anchor := Identity{Claims: auth.Claims{Sub: "anchor-a", Role: auth.RoleAnchor}}
	res, err := r.svc.Send(ctx, anchor, "a", &message.Request{Kind: message.KindChat, Text: "psst", Scope: message.ScopeUser, To: "u9"})
	if err != nil || res.Msg.Seq != 0 {
		t.Fatalf("user-scoped send: %+v %v", res, err)
	}
	if got := users(); len(got) != 1 || got[0].User != "u9" || got[0].Msg.Text != "psst" {
		t.Fatalf("users topic: %+v", got)
	}
	if n := len(r.messages(t, "a")); n != 0 {
		t.Fatalf("a user-scoped message entered the room timeline (%d)", n)
	}

	res, err = r.svc.Send(ctx, admin, "a", &message.Request{Kind: message.KindSystem, Text: "maintenance", Scope: message.ScopeBroadcast})
	if err != nil || res.Msg.Room != "a" {
		t.Fatalf("broadcast: %+v %v", res, err)
	}
	for _, id := range []string{"a", "b", "live"} {
		msgs := r.messages(t, id)
		if len(msgs) != 1 || msgs[0].Text != "maintenance" || !strings.HasPrefix(msgs[0].ID, res.Msg.ID[:strings.Index(res.Msg.ID, ".")]) {
			t.Fatalf("room %s after broadcast: %+v", id, msgs)
		}
	}
}

func TestSessionClockAndArchive(t *testing.T) {
	r := newRig(t, Config{}, 100)
	ctx := context.Background()
	late := int64(4000)
	res, err := r.svc.Send(ctx, viewer("u1"), "live", &message.Request{Kind: message.KindChat, Text: "x", VideoMS: &late})
	if err != nil || res.Msg.VideoMS == nil || *res.Msg.VideoMS != 4000 {
		t.Fatalf("plausible client position: %+v %v", res.Msg, err)
	}
	ahead := int64(9000)
	res, err = r.svc.Send(ctx, viewer("u1"), "live", &message.Request{Kind: message.KindChat, Text: "y", VideoMS: &ahead})
	if err != nil || res.Msg.VideoMS == nil || *res.Msg.VideoMS != 5000 {
		t.Fatalf("client ahead of the stream: %+v %v", res.Msg, err)
	}
	res, err = r.svc.Send(ctx, viewer("u1"), "a", &message.Request{Kind: message.KindChat, Text: "z"})
	if err != nil || res.Msg.VideoMS != nil {
		t.Fatalf("room not live: %+v %v", res.Msg, err)
	}
	for _, room := range []string{"live", "a"} { // a like while live is counted for the summary
		if _, err := r.svc.Send(ctx, viewer("u2"), room, &message.Request{Kind: message.KindLike}); err != nil {
			t.Fatal(err)
		}
	}
	r.arch.mu.Lock()
	defer r.arch.mu.Unlock()
	if len(r.arch.msgs["s-live"]) != 2 || len(r.arch.msgs) != 1 || r.arch.likes != 1 {
		t.Fatalf("archive: %+v, %d likes", r.arch.msgs, r.arch.likes)
	}
}

func TestLifecycleIsMustDeliver(t *testing.T) {
	r := newRig(t, Config{}, 100)
	r.svc.Lifecycle(context.Background(), "a", room.EventLiveStart)
	msgs := r.messages(t, "a")
	if len(msgs) != 1 || msgs[0].Kind != message.KindSystem || msgs[0].Text != "live_start" ||
		string(msgs[0].Data) != `{"event":"live_start"}` || msgs[0].Priority != message.PriorityMustDeliver {
		t.Fatalf("lifecycle: %+v", msgs)
	}
}

// TestPresenceAnnouncer: the service's own ticker turns the feed's summaries
// into enter/leave messages, a few by name and more as a count.
func TestPresenceAnnouncer(t *testing.T) {
	r := newRig(t, Config{PresenceEvery: 10 * time.Millisecond}, 100)
	r.feed.put(presence.Summary{Room: "a", Joined: 2, Named: []presence.Member{{UserID: "u1", Name: "Ann"}, {UserID: "u2", Name: "Bo"}}})
	r.feed.put(presence.Summary{Room: "b", Joined: 40, Left: 3, Named: []presence.Member{{UserID: "u3", Name: "Cy"}}})
	testutil.WaitFor(t, "enter and leave messages", 10*time.Second, func() bool {
		return len(r.messages(t, "a")) == 2 && len(r.messages(t, "b")) == 2
	})
	a, b := r.messages(t, "a"), r.messages(t, "b")
	if a[0].Text != "Ann joined" || a[1].Text != "Bo joined" || a[0].Kind != message.KindEnter || a[0].User.ID != "u1" {
		t.Fatalf("named enters: %+v %+v", a[0], a[1])
	}
	if b[0].Text != "+40 joined" || string(b[0].Data) != `{"count":40}` || b[1].Kind != message.KindLeave || b[1].Text != "-3 left" {
		t.Fatalf("counted enters and leaves: %+v %+v", b[0], b[1])
	}
	if a[0].MustDeliver() || b[1].MustDeliver() || a[0].Priority >= message.PriorityMustDeliver {
		t.Fatalf("presence messages must be droppable: %+v", a[0])
	}
}

func TestNewNeedsItsDependencies(t *testing.T) {
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Fatal("New without dependencies succeeded")
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	r := newRig(t, Config{}, 100)
	r.svc.Close()
	r.svc.Close()
}

// recallCounter counts the service's separate duplicate look-ups.
type recallCounter struct {
	*timeline.Memory
	n atomic.Int64
}

func (c *recallCounter) Recall(ctx context.Context, room, key string) (timeline.Ack, bool, error) {
	c.n.Add(1)
	return c.Memory.Recall(ctx, room, key)
}

// TestRepeatGetsTheFirstAck (issues 8 and 14): a send repeated with its
// client_msg_id gets the first send's ack — from the append itself when the
// repeat passes the checks (no separate look-up: none per message), and
// from a look-up when a check would now turn it away (the rate limit the
// first send used up, a mute that came after it). A new send is refused.
func TestRepeatGetsTheFirstAck(t *testing.T) {
	r := newRig(t, Config{}, 2)
	ctx := context.Background()
	send := func(id string) (Result, error) {
		return r.svc.Send(ctx, viewer("u1"), "a", &message.Request{Kind: message.KindChat, Text: "hi " + id, ClientMsgID: id})
	}
	first, err := send("c1")
	if err != nil || first.Duplicate {
		t.Fatalf("first send: %+v %v", first, err)
	}
	again, err := send("c1") // passes the rate limit (its second token): the append answers
	if err != nil || !again.Duplicate || again.Msg.Seq != first.Msg.Seq || again.Msg.ID != first.Msg.ID {
		t.Fatalf("repeat: %+v %v, first %+v", again, err, first.Msg)
	}
	if n := r.recalls.n.Load(); n != 0 {
		t.Fatalf("%d separate look-ups for sends the checks let through", n)
	}
	limited, err := send("c1") // the bucket is empty now: looked up, answered
	if err != nil || !limited.Duplicate || limited.Msg.Seq != first.Msg.Seq || limited.Msg.ID != first.Msg.ID {
		t.Fatalf("repeat over the rate limit: %+v %v", limited, err)
	}
	if _, err := send("c2"); testutil.ErrCode(err) != errs.RateLimited {
		t.Fatalf("a new send over the rate limit: %v", err)
	}
	if err := r.svc.Mute(ctx, admin, "a", "u1", 0); err != nil {
		t.Fatal(err)
	}
	muted, err := send("c1")
	if err != nil || !muted.Duplicate || muted.Msg.Seq != first.Msg.Seq {
		t.Fatalf("repeat after a mute: %+v %v", muted, err)
	}
	if _, err := send("c3"); testutil.ErrCode(err) != errs.Muted {
		t.Fatalf("a new send while muted: %v", err)
	}
	n := 0
	for _, m := range r.messages(t, "a") {
		if m.Kind == message.KindChat {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d chat messages stored, want 1", n)
	}
}
