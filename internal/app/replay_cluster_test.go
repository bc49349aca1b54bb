package app

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/redistest"
	"roomcast/internal/testutil"
)

// TestClusterArchiveOnce: three nodes sharing Redis and PostgreSQL, the
// publisher on node 0, viewers and senders on all three. Every message is
// archived exactly once — by the node that sequenced it — with video_ms on
// the session's clock, whichever node it was sent to.
func TestClusterArchiveOnce(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	args := append(clusterArgs("redis://"+redistest.RedisAddr+"/0", prefix, redistest.Postgres(t)), "--record-segment", "1s")
	bin := redistest.Binary(t)
	rtmpPort := redistest.FreePort(t)
	nodes := []*redistest.Node{
		redistest.StartNode(t, bin, append([]string{"--data", t.TempDir()}, append(args, "--rtmp", "127.0.0.1:"+strconv.Itoa(rtmpPort))...)...),
		redistest.StartNode(t, bin, append([]string{"--data", t.TempDir()}, args...)...),
		redistest.StartNode(t, bin, append([]string{"--data", t.TempDir()}, args...)...),
	}
	cl := make([]*server, len(nodes))
	for i, n := range nodes {
		cl[i] = remote(t, n.URL)
	}
	anchor := cl[0].createRoom("arch")
	key := cl[0].streamKey("arch", anchor)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A viewer on every node: each node's fan-out receives every message of
	// the room over the bus, and still only the sequencing node archives it.
	for _, s := range cl {
		w, _, err := s.dial(ctx, "room=arch")
		if err != nil {
			t.Fatal(err)
		}
		defer w.close()
	}
	pub := publishSample(ctx, t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", rtmpPort, key))
	var sess session
	testutil.WaitFor(t, "a live session seen from node 2", 30*time.Second, func() bool {
		ss := cl[2].sessions("arch")
		if len(ss) == 1 && ss[0].Live {
			sess = ss[0]
			return true
		}
		return false
	})
	// Every node stamps with the session's clock before the test sends: the
	// publisher's at once, the others once they have read the session from
	// the database (about a second; longer on a busy machine). A probe
	// that was stamped is archived like any message.
	for i, s := range cl {
		tok, n := s.token("probe"+strconv.Itoa(i), auth.RoleViewer, 1), 0
		testutil.WaitFor(t, fmt.Sprintf("node %d stamping with the session clock", i), 30*time.Second, func() bool {
			n++
			code, a := s.send("arch", tok, map[string]any{"kind": "chat", "text": fmt.Sprint("probe ", i, " ", n)})
			return code == 201 && a.VideoMS != nil
		})
	}
	const perNode = 10
	sent := map[string]bool{}
	for i := range perNode * len(cl) {
		s := cl[i%len(cl)]
		tok := s.token("u"+strconv.Itoa(i), auth.RoleViewer, 1)
		code, a := s.send("arch", tok, map[string]any{"kind": "chat", "text": "m" + strconv.Itoa(i)})
		if code != 201 {
			t.Fatalf("send to node %d: %d %+v", i%len(cl), code, a)
		}
		sent[a.ID] = true
	}
	stopPublish(pub)
	testutil.WaitFor(t, "every message archived", 30*time.Second, func() bool {
		n := 0
		for _, m := range allMessages(t, cl[1], sess.ID, 7) {
			if sent[m.ID] {
				n++
			}
		}
		return n >= len(sent)
	})
	// The session's end (a system message, archived too) may still be on
	// its way: compare the count with the archive once both agree.
	var msgs []archived
	var one session
	testutil.WaitFor(t, "the session's count to match its archive", 30*time.Second, func() bool {
		msgs = allMessages(t, cl[1], sess.ID, 7)
		one = session{}
		cl[2].do("GET", "/api/sessions/"+sess.ID, "", nil, &one)
		return one.Messages == int64(len(msgs)) && one.ID == sess.ID
	})
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.ID]++
		if m.VideoMS == nil || *m.VideoMS < 0 {
			t.Errorf("message %s without video_ms", m.ID)
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %s archived %d times", id, n)
		}
	}
	for id := range sent {
		if seen[id] != 1 {
			t.Errorf("message %s archived %d times", id, seen[id])
		}
	}
}
