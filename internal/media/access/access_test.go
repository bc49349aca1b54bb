package access

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSignature(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := &Checker{SignKey: "key", Now: func() time.Time { return now }}
	q := func(s string) url.Values { v, _ := url.ParseQuery(s); return v }
	good := SignedQuery("key", "room1", now, time.Minute)
	if err := c.CheckSignature("room1", q(good)); err != nil {
		t.Fatalf("good: %v", err)
	}
	// The documented input: HMAC-SHA256(key, room + ":" + expires), hex.
	exp := now.Add(time.Minute).Unix()
	if want := "expires=" + strconv.FormatInt(exp, 10) + "&sign=" + Sign("key", "room1", exp); good != want {
		t.Fatalf("SignedQuery %q, want %q", good, want)
	}
	// Test vector (docs/api.md): echo -n room1:1700000060 | openssl dgst -sha256 -hmac key
	if got := Sign("key", "room1", 1700000060); got != "3f2270b7b14b402493632daf1b21950d051f0bb3c3a414f648292fd62d99ec25" {
		t.Fatalf("test vector: %s", got)
	}
	for name, qs := range map[string]string{
		"missing":    "",
		"no sign":    "expires=" + strconv.FormatInt(exp, 10),
		"other room": SignedQuery("key", "room2", now, time.Minute),
		"other key":  SignedQuery("nope", "room1", now, time.Minute),
		"expired":    SignedQuery("key", "room1", now, -time.Second),
		"not hex":    "expires=" + strconv.FormatInt(exp, 10) + "&sign=zz",
		"bad expiry": "expires=soon&sign=00",
	} {
		if err := c.CheckSignature("room1", q(qs)); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v, want forbidden", name, err)
		}
	}
	if err := (&Checker{}).CheckSignature("room1", nil); err != nil {
		t.Fatalf("no key configured: %v", err)
	}
}

func TestHooks(t *testing.T) {
	got := make(chan Event, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev Event
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&ev) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got <- ev
		switch r.URL.Path {
		case "/deny":
			w.WriteHeader(http.StatusForbidden)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		}
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &Checker{HookPublish: srv.URL + "/ok", HookPlay: srv.URL + "/deny", HookUnpublish: srv.URL + "/ok",
		Client: &http.Client{Transport: tr}, HookTimeout: 100 * time.Millisecond}
	ev := Event{Room: "r1", Stream: "live/r1", Key: "k", Protocol: "rtmp", RemoteAddr: "1.2.3.4:5"}
	if err := c.OnPublish(context.Background(), ev); err != nil {
		t.Fatalf("on_publish 200: %v", err)
	}
	if e := <-got; e.Action != "on_publish" || e.Room != "r1" || e.Key != "k" || e.Time == 0 {
		t.Fatalf("event %+v", e)
	}
	if err := c.OnPlay(context.Background(), ev); !errors.Is(err, ErrForbidden) {
		t.Fatalf("on_play 403: %v", err)
	}
	<-got
	c.HookPlay = srv.URL + "/slow"
	if err := c.OnPlay(context.Background(), ev); !errors.Is(err, ErrForbidden) {
		t.Fatalf("on_play timeout: %v", err)
	}
	<-got
	c.HookPlay = "http://127.0.0.1:1/unreachable"
	if err := c.OnPlay(context.Background(), ev); !errors.Is(err, ErrForbidden) {
		t.Fatalf("unreachable hook must refuse: %v", err)
	}
	c.OnUnpublish(ev)
	c.Wait()
	if e := <-got; e.Action != "on_unpublish" {
		t.Fatalf("event %+v", e)
	}
	var none *Checker
	if err := none.OnPublish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}
