package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"roomcast/internal/quiz"
	"roomcast/internal/testutil"
)

// quizPlayer is a user connected to a room over WebSocket who plays.
type quizPlayer struct {
	t     *testing.T
	user  string
	tok   string
	c     *wsClient
	stash []msg // room messages read while waiting for something else
}

func (s *server) player(ctx context.Context, room, user string) *quizPlayer {
	s.t.Helper()
	tok := s.token(user, "", 1)
	c, _, err := s.dial(ctx, "room="+room+"&token="+tok)
	if err != nil {
		s.t.Fatalf("%s dial: %v", user, err)
	}
	s.t.Cleanup(c.close)
	if _, err := c.next(ctx, "batch"); err != nil { // attached (and present) once the first batch arrives
		s.t.Fatalf("%s first batch: %v", user, err)
	}
	return &quizPlayer{t: s.t, user: user, tok: tok, c: c}
}

// waitMsg returns the next room message of kind for question n.
func (p *quizPlayer) waitMsg(ctx context.Context, kind string, n int) msg {
	p.t.Helper()
	for {
		for i, m := range p.stash {
			if m.Kind == kind && quizN(m) == n {
				p.stash = append(p.stash[:i], p.stash[i+1:]...)
				return m
			}
		}
		f, err := p.c.read(ctx)
		if err != nil {
			p.t.Fatalf("%s waiting for %s %d: %v", p.user, kind, n, err)
		}
		p.stash = append(p.stash, f.Messages...)
	}
}

func quizN(m msg) int {
	var d struct {
		N int `json:"n"`
	}
	_ = json.Unmarshal(m.Data, &d)
	return d.N
}

// answerWS answers over the WebSocket frame; it returns the sealed result or
// the error code.
func (p *quizPlayer) answerWS(ctx context.Context, activity string, n, option int) ([]byte, string) {
	p.t.Helper()
	return p.awaitAnswer(ctx, p.sendAnswer(ctx, activity, n, option))
}

// sendAnswer writes an answer frame and returns its id.
func (p *quizPlayer) sendAnswer(ctx context.Context, activity string, n, option int) string {
	p.t.Helper()
	id := fmt.Sprintf("a-%s-%d-%d", p.user, n, time.Now().UnixNano())
	f := map[string]any{"type": "answer", "id": id, "n": n, "option": option}
	if activity != "" {
		f["activity"] = activity
	}
	if err := p.c.write(ctx, f); err != nil {
		p.t.Fatal(err)
	}
	return id
}

// awaitAnswer reads until the answer to the frame id arrives; it returns
// the sealed result or the error code.
func (p *quizPlayer) awaitAnswer(ctx context.Context, id string) ([]byte, string) {
	p.t.Helper()
	for {
		_, data, err := p.c.conn.Read(ctx)
		if err != nil {
			p.t.Fatalf("%s answer: %v", p.user, err)
		}
		var r struct {
			frame
			Sealed string `json:"sealed"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			p.t.Fatal(err)
		}
		switch {
		case r.Type == "batch":
			p.stash = append(p.stash, r.Messages...)
		case r.ID == id && r.Type == "answer_ok":
			b, err := base64.StdEncoding.DecodeString(r.Sealed)
			if err != nil {
				p.t.Fatal(err)
			}
			return b, ""
		case r.ID == id && r.Type == "error":
			return nil, r.Error.Code
		}
	}
}

// answerHTTP answers with POST /api/activities/{id}/answers.
func (s *server) answerHTTP(tok, activity string, n, option int) ([]byte, string) {
	s.t.Helper()
	var out struct {
		N      int    `json:"n"`
		Sealed string `json:"sealed"`
		Error  *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	code := s.do("POST", "/api/activities/"+activity+"/answers", tok, map[string]int{"n": n, "option": option}, &out)
	if out.Error != nil {
		return nil, out.Error.Code
	}
	if code != 200 || out.N != n {
		s.t.Fatalf("answer: %d %+v", code, out)
	}
	b, err := base64.StdEncoding.DecodeString(out.Sealed)
	if err != nil {
		s.t.Fatal(err)
	}
	return b, ""
}

type revealData struct {
	quiz.RevealData
}

func decodeData[T any](t testing.TB, m msg) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("%s data %s: %v", m.Kind, m.Data, err)
	}
	return v
}

// openSealed decrypts a sealed result with the key a quiz_reveal carried,
// checking it against the key_hash of the question.
func openSealed(t testing.TB, q quiz.QuestionData, r quiz.RevealData, sealed []byte) quiz.Result {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(r.Key)
	if err != nil || len(key) != 32 {
		t.Fatalf("key %q: %v", r.Key, err)
	}
	if quiz.KeyHash(key) != q.KeyHash {
		t.Fatalf("revealed key does not match key_hash")
	}
	res, err := quiz.Open(key, q.Activity, q.N, sealed)
	if err != nil {
		t.Fatalf("open sealed: %v", err)
	}
	return res
}

// opStep runs an operator step and fails on anything but 200.
func (s *server) opStep(tok, path string) quiz.View {
	s.t.Helper()
	var v quiz.View
	if code := s.do("POST", path, tok, nil, &v); code != 200 {
		s.t.Fatalf("POST %s: %d", path, code)
	}
	return v
}

// revealWhenDue reveals question n as soon as its deadline has passed.
func (s *server) revealWhenDue(tok, activity string, n int) quiz.View {
	s.t.Helper()
	var v quiz.View
	testutil.WaitFor(s.t, fmt.Sprintf("reveal %d accepted", n), 30*time.Second, func() bool {
		return s.do("POST", fmt.Sprintf("/api/activities/%s/questions/%d/reveal", activity, n), tok, nil, &v) == http.StatusOK
	})
	return v
}

func errCode(t testing.TB, s *server, method, path, tok string, body any) (int, string) {
	t.Helper()
	var out struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	code := s.do(method, path, tok, body, &out)
	if out.Error == nil {
		return code, ""
	}
	return code, out.Error.Code
}
