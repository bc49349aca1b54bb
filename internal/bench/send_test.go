package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestBenchSend(t *testing.T) {
	for _, via := range []string{"http", "ws"} {
		t.Run(via, func(t *testing.T) {
			f := newFakeServer(t, nil)
			rep, err := runBench(t, f, "send", "--senders", "4", "--duration", "300ms", "--via", via, "--inflight", "2",
				"--secret", "k", "--text-size", "64", "--pid", itoa(osPid()))
			if err != nil {
				t.Fatalf("err %v violations %v", err, rep.Violations)
			}
			s := rep.Send
			if s.Acked == 0 || s.DupSeqs != 0 || len(s.Errors) != 0 || s.Latency.Count != s.Acked || s.Writers != 4 {
				t.Fatalf("send %+v", s)
			}
			f.mu.Lock()
			n := len(f.msgs)
			text := string(f.msgs[0])
			f.mu.Unlock()
			if uint64(n) != s.Acked {
				t.Fatalf("server stored %d, bench saw %d acks", n, s.Acked)
			}
			if !strings.Contains(text, `"text":"bench:`) || rep.Server == nil {
				t.Fatalf("message %s server %+v", text, rep.Server)
			}
		})
	}
}

// TestBenchSendUsers: with --users the writers cycle through that many
// distinct users, each writer its own share.
func TestBenchSendUsers(t *testing.T) {
	f := newFakeServer(t, nil)
	rep, err := runBench(t, f, "send", "--senders", "2", "--users", "6", "--rate", "200", "--duration", "300ms",
		"--secret", "k", "--user-prefix", "p-")
	if err != nil {
		t.Fatalf("err %v violations %v", err, rep.Violations)
	}
	if s := rep.Send; s.Acked < 12 || len(s.Errors) != 0 || s.Users != 6 {
		t.Fatalf("send %+v", s)
	}
	users := map[string]bool{}
	f.mu.Lock()
	for _, raw := range f.msgs {
		var m struct {
			User struct {
				ID string `json:"id"`
			} `json:"user"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		users[m.User.ID] = true // the fake server names the user by its token
	}
	f.mu.Unlock()
	if len(users) != 6 {
		t.Fatalf("%d distinct users sent, want 6", len(users))
	}
	for _, bad := range [][]string{{"--senders", "4", "--users", "3"}, {"--senders", "2", "--users", "4", "--via", "ws"}} {
		if _, err := runBench(t, f, append([]string{"send", "--secret", "k", "--duration", "100ms"}, bad...)...); err == nil {
			t.Fatalf("bench send %v accepted", bad)
		}
	}
}

func TestBenchSendRateLimited(t *testing.T) {
	f := newFakeServer(t, func(f *fakeServer) { f.every429 = 3 })
	rep, err := runBench(t, f, "send", "--senders", "2", "--rate", "200", "--duration", "300ms", "--token", "t")
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Send
	if s.Errors["429 rate_limited"] == 0 || s.Acked == 0 || s.Sent != s.Acked+s.Errors["429 rate_limited"] {
		t.Fatalf("send %+v", s)
	}
}

func TestBenchSendUnauthorized(t *testing.T) {
	f := newFakeServer(t, nil)
	rep, err := runBench(t, f, "send", "--senders", "1", "--duration", "100ms", "--via", "ws", "--secret", "k", "--room", "other")
	if err == nil || rep != nil {
		t.Fatalf("connecting to a missing room must fail: %v", err)
	}
	f2 := newFakeServer(t, nil)
	rep, err = runBench(t, f2, "send", "--senders", "1", "--rate", "50", "--duration", "200ms", "--room", "r1", "--url", f2.srv.URL+"/x", "--token", "t")
	if !errors.Is(err, ErrChecksFailed) || rep.Send.Acked != 0 {
		t.Fatalf("err %v send %+v", err, rep.Send)
	}
}

func TestBenchTable(t *testing.T) {
	f := newFakeServer(t, nil)
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"ws", "--url", f.srv.URL, "--room", f.room, "--conns", "3", "--ramp", "0", "--settle", "0s",
		"--duration", "300ms", "--drain", "5s", "--send-rate", "20", "--token", "t", "--pid", itoa(osPid())}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"connections", "send→receive", "sequence (strict)", "server (pid", "result: OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "ws") {
		t.Errorf("no progress line: %q", errOut.String())
	}
}

// --client-msg-id gives each message its own client_msg_id (the JS client's
// idempotent send); without it there is none.
func TestSendClientMsgID(t *testing.T) {
	for _, on := range []bool{false, true} {
		sp := &sendSpec{kind: "chat", msgID: on}
		var ids []string
		for _, nano := range []int64{1700000000000000001, 1700000000000000002} {
			var v struct {
				ID   *string `json:"client_msg_id"`
				Kind string  `json:"kind"`
			}
			if err := json.Unmarshal(sp.appendMessage(nil, nil, nano), &v); err != nil || v.Kind != "chat" {
				t.Fatalf("message: %+v %v", v, err)
			}
			if (v.ID != nil) != on {
				t.Fatalf("--client-msg-id %v: client_msg_id %v", on, v.ID)
			}
			if v.ID != nil {
				ids = append(ids, *v.ID)
			}
		}
		if on && ids[0] == ids[1] {
			t.Fatalf("two sends share client_msg_id %q", ids[0])
		}
	}
}
