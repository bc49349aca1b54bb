package message

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"roomcast/internal/errs"
	"roomcast/internal/testutil"
)

var (
	viewer = Sender{User: User{ID: "u1", Name: "Ann", Level: 10}, Role: RoleViewer}
	owner  = Sender{User: User{ID: "a1", Name: "Anchor", Level: 50}, Role: RoleAnchor, Owner: true}
	admin  = Sender{User: User{ID: "admin", Name: "admin", Level: 100}, Role: RoleAdmin}
	system = Sender{User: User{ID: "system"}, Role: RoleSystem}
)

func TestBuildAcceptsAndFillsIn(t *testing.T) {
	cat := NewCatalogue(nil)
	m, err := Build(&Request{Kind: KindChat, Text: "hi\tthere\u0007\n"}, viewer, "r1", cat, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Room != "r1" || m.Scope != ScopeRoom || m.User.ID != "u1" || m.Text != "hi there " || m.Priority != 100+3*10 {
		t.Fatalf("chat: %+v", m)
	}
	g, err := Build(&Request{Kind: KindGift, Gift: &Gift{ID: "rocket", Name: "free!", ValueCents: 1}}, viewer, "r1", cat, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// Name and value come from the catalogue, never from the client; count defaults to 1.
	if g.Gift.Name != "Rocket" || g.Gift.ValueCents != 50000 || g.Gift.Count != 1 {
		t.Fatalf("gift: %+v", g.Gift)
	}
	u, err := Build(&Request{Kind: KindChat, Text: "psst", Scope: ScopeUser, To: "u2"}, owner, "r1", cat, Limits{})
	if err != nil || u.To != "u2" || u.Scope != ScopeUser {
		t.Fatalf("user scope: %+v %v", u, err)
	}
	d, err := Build(&Request{Kind: KindQuiz, Data: json.RawMessage(`{"q":1}`)}, admin, "r1", cat, Limits{})
	if err != nil || string(d.Data) != `{"q":1}` || d.Priority != PriorityMustDeliver {
		t.Fatalf("admin data: %+v %v", d, err)
	}
	if v, _ := Build(&Request{Kind: KindChat, Text: "x", Data: json.RawMessage(`{"q":1}`)}, viewer, "r1", cat, Limits{}); v.Data != nil {
		t.Fatal("a viewer's data was kept")
	}
}

func TestBuildRefuses(t *testing.T) {
	cat := NewCatalogue(nil)
	for _, c := range []struct {
		name string
		req  Request
		s    Sender
		code string
	}{
		{"no kind", Request{Text: "x"}, viewer, errs.UnknownKind},
		{"unknown kind", Request{Kind: "shout", Text: "x"}, viewer, errs.UnknownKind},
		{"viewer notice", Request{Kind: KindNotice, Text: "x"}, viewer, errs.ForbiddenKind},
		{"viewer system", Request{Kind: KindSystem, Text: "x"}, viewer, errs.ForbiddenKind},
		{"admin enter", Request{Kind: KindEnter}, admin, errs.ForbiddenKind},
		{"anchor quiz", Request{Kind: KindQuiz}, owner, errs.ForbiddenKind},
		{"user scope without to", Request{Kind: KindChat, Text: "x", Scope: ScopeUser}, owner, errs.BadRequest},
		{"viewer user scope", Request{Kind: KindChat, Text: "x", Scope: ScopeUser, To: "u2"}, viewer, errs.Forbidden},
		{"anchor broadcast", Request{Kind: KindChat, Text: "x", Scope: ScopeBroadcast}, owner, errs.Forbidden},
		{"unknown scope", Request{Kind: KindChat, Text: "x", Scope: "planet"}, viewer, errs.BadRequest},
		{"invalid utf-8", Request{Kind: KindChat, Text: "a\xffb"}, viewer, errs.InvalidUTF8},
		{"too long", Request{Kind: KindChat, Text: strings.Repeat("é", 201)}, viewer, errs.TextTooLong},
		{"empty chat", Request{Kind: KindChat, Text: "   "}, viewer, errs.EmptyText},
		{"gift without id", Request{Kind: KindGift, Gift: &Gift{}}, viewer, errs.UnknownGift},
		{"unknown gift", Request{Kind: KindGift, Gift: &Gift{ID: "yacht"}}, viewer, errs.UnknownGift},
		{"gift count", Request{Kind: KindGift, Gift: &Gift{ID: "rose", Count: 10000}}, viewer, errs.BadCount},
		{"negative count", Request{Kind: KindGift, Gift: &Gift{ID: "rose", Count: -1}}, viewer, errs.BadCount},
		{"huge data", Request{Kind: KindSystem, Data: json.RawMessage(`"` + strings.Repeat("d", 9000) + `"`)}, admin, errs.BadRequest},
	} {
		if _, err := Build(&c.req, c.s, "r1", cat, Limits{}); testutil.ErrCode(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
	if _, err := Build(&Request{Kind: KindEnter}, system, "r1", cat, Limits{}); err != nil {
		t.Errorf("the server's enter: %v", err)
	}
	if _, err := Build(&Request{Kind: KindChat, Text: "12345"}, viewer, "r1", cat, Limits{MaxTextRunes: 4}); testutil.ErrCode(err) != errs.TextTooLong {
		t.Errorf("configured text limit: %v", err)
	}
}

func TestPriorityOrder(t *testing.T) {
	p := func(m Message) int { return ComputePriority(&m) }
	gift := func(v int64, n int) int { return p(Message{Kind: KindGift, Gift: &Gift{ValueCents: v, Count: n}}) }
	chat := func(lvl int) int { return p(Message{Kind: KindChat, User: &User{Level: lvl}}) }
	if !(p(Message{Kind: KindRetract}) == PriorityMustDeliver && PriorityMustDeliver > gift(1e9, 9999) &&
		gift(10, 2) > gift(10, 1) && gift(10, 1) > p(Message{Kind: KindPK}) && p(Message{Kind: KindPK}) > chat(100) &&
		chat(100) > chat(0) && chat(0) > p(Message{Kind: KindNotice}) && p(Message{Kind: KindNotice}) > p(Message{Kind: KindEnter})) {
		t.Fatal("priority bands out of order")
	}
	if chat(1000) != chat(100) || chat(-5) != chat(0) {
		t.Fatal("chat level is not clamped to 0–100")
	}
	for _, k := range []Kind{KindSystem, KindKick, KindRetract, KindRedPacket, KindQuiz, KindPKResult, KindMute} {
		if !k.MustDeliver() || !k.Known() {
			t.Errorf("%s must be delivered", k)
		}
	}
	for _, k := range []Kind{KindChat, KindGift, KindLike, KindEnter, KindLeave, KindNotice, KindPK} {
		if k.MustDeliver() || !k.Known() {
			t.Errorf("%s is droppable", k)
		}
	}
}

// TestEncodingMatchesEncodingJSON: the hand-written encoder says what
// encoding/json would, and is safe inside HTML.
func TestEncodingMatchesEncodingJSON(t *testing.T) {
	vms := int64(1234)
	m := &Message{Seq: 7, ID: "i-1", Room: "r", Kind: KindGift, Scope: ScopeUser, To: "u2",
		User: &User{ID: "u1", Name: `<b>"Ann"</b> & \co` + "\u2028\x01", Level: 3}, Text: "héllo\n\xff",
		Gift: &Gift{ID: "rose", Name: "Rose", ValueCents: 10, Count: 2}, Priority: 540, TS: 99, Ref: "x", VideoMS: &vms,
		Data: json.RawMessage(`{"a":[1,2]}`)}
	enc := m.Encoded()
	for _, bad := range []string{"<", ">", "&", "\u2028"} {
		if strings.Contains(string(enc), bad) {
			t.Fatalf("%q unescaped in %s", bad, enc)
		}
	}
	var got, want map[string]any
	if err := json.Unmarshal(enc, &got); err != nil {
		t.Fatalf("%s: %v", enc, err)
	}
	std, _ := json.Marshal(m)
	if err := json.Unmarshal(std, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hand-written %v\nencoding/json %v", got, want)
	}
	// Invalid data is left out rather than breaking the frame.
	m2 := &Message{ID: "i", Kind: KindChat, Data: json.RawMessage(`{bad`)}
	if !json.Valid(m2.Encoded()) {
		t.Fatalf("invalid frame %s", m2.Encoded())
	}
}

func TestCatalogue(t *testing.T) {
	c := NewCatalogue([]GiftDef{{ID: "b", ValueCents: 200}, {ID: "a", ValueCents: 100}})
	if l := c.List(); len(l) != 2 || l[0].ID != "a" {
		t.Fatalf("list cheapest first: %+v", l)
	}
	if g, ok := c.Lookup("b"); !ok || g.ValueCents != 200 {
		t.Fatalf("lookup: %+v %v", g, ok)
	}
	if _, ok := c.Lookup("rose"); ok {
		t.Fatal("a configured catalogue still has the default gifts")
	}
	if len(NewCatalogue(nil).List()) != len(DefaultGifts) {
		t.Fatal("empty configuration is not the default catalogue")
	}
}
