package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/proto"

	pb "roomcast/proto/roomcast/v1"
)

// QuizQuestion is one question's figures in bench quiz's report.
type QuizQuestion struct {
	N              int     `json:"n"`
	Answers        int64   `json:"answers"`
	AnswerWindowMS float64 `json:"answer_window_ms"`
	ServerCPUMS    float64 `json:"server_cpu_ms,omitempty"`
	USCPUPerAnswer float64 `json:"us_cpu_per_answer,omitempty"`
}

// quizScenario is `roomcast bench quiz` (issue 12, Q8): N players connected
// over WebSocket (JSON or protobuf) play a live quiz the bench runs as the
// operator. For each question it measures how fast the answers come back
// (answers/s from the first answer sent to the last acknowledged), the
// server CPU spent per answer (--pid: from the push to the last answer,
// the question's delivery included) and how long the reveal takes to reach
// every player (p50/p99 from the reveal request).
type quizScenario struct {
	activityPlayers
	questions, answerMS int
	settleFor           time.Duration

	curN      atomic.Int64 // the open question (clients answer it)
	answered  atomic.Int64 // answers acknowledged, current question
	refused   atomic.Int64 // answers refused, current question
	revealed  atomic.Int64 // players that received the current reveal
	firstSent atomic.Int64 // unix ns of the first answer sent, current question
	lastAck   atomic.Int64 // unix ns of the last acknowledgement
	revealAt  atomic.Int64 // unix ns of the reveal request
	reveal    Hist

	rep QuizReport
}

// QuizReport is bench quiz's section of the report.
type QuizReport struct {
	Players        int     `json:"players"`
	Connected      int     `json:"connected"`
	Format         string  `json:"format"`
	Questions      int     `json:"questions"`
	Activity       string  `json:"activity"`
	Answers        uint64  `json:"answers"`          // acknowledged, all questions
	Refused        uint64  `json:"refused"`          // error answers, all questions
	AnswersPerS    float64 `json:"answers_per_s"`    // the best question: answers ÷ (last ack − first send)
	AnswerWindowMS float64 `json:"answer_window_ms"` // that question's first send → last ack
	ServerCPUS     float64 `json:"server_cpu_s,omitempty"`
	USCPUPerAnswer float64 `json:"us_cpu_per_answer,omitempty"` // --pid: push → last ack, ÷ answers
	Reveal         Latency `json:"reveal"`                      // reveal request → quiz_reveal at each player
	RevealReached  uint64  `json:"reveal_reached"`
	RevealCallMS   float64 `json:"reveal_call_ms"` // the slowest accepted reveal request (the server's part before delivery)
	// PerQuestion is each question's figures (the best one is above); with
	// --pid, USCPUAll is all questions' server CPU (push → last ack each)
	// ÷ all their answers.
	PerQuestion []QuizQuestion `json:"per_question,omitempty"`
	USCPUAll    float64        `json:"us_cpu_per_answer_all,omitempty"`
	cpuAll      time.Duration
	Errors      map[string]uint64 `json:"errors,omitempty"`
}

func (s *quizScenario) flags(fs *flag.FlagSet) {
	s.playerFlags(fs)
	fs.IntVar(&s.questions, "questions", 3, "questions (1–50)")
	fs.IntVar(&s.answerMS, "answer-ms", 10000, "answer window of each question (the server adds --quiz-delay)")
	fs.DurationVar(&s.settleFor, "settle", 2*time.Second,
		"wait after the ramp before the activity starts, so that question 1's window holds no work of the ramp (the room's online count sent to every player)")
}

func (s *quizScenario) check() (int, error) {
	switch {
	case s.players < 1:
		return 0, errors.New("bench quiz: --players must be ≥ 1")
	case s.settleFor < 0:
		return 0, errors.New("bench quiz: --settle must not be negative")
	case s.questions < 1 || s.questions > 50:
		return 0, errors.New("bench quiz: --questions must be 1–50")
	case !s.formatOK():
		return 0, errFormat("bench quiz")
	case s.secret == "":
		return 0, errors.New("bench quiz: --secret is required (the bench runs the quiz as an admin)")
	}
	return s.players + 4, nil
}

func (s *quizScenario) estimate() time.Duration {
	return rampTime(s.players, s.perS) + s.settleFor + time.Duration(s.questions)*(time.Duration(s.answerMS)*time.Millisecond+4*time.Second)
}

func (s *quizScenario) status(r *runner, dt time.Duration) string {
	return fmt.Sprintf("%s q%d  connected %d/%d  answered %d  revealed %d", r.phase.Load(), s.curN.Load(),
		s.connected.Load(), s.players, s.answered.Load(), s.revealed.Load())
}

func (s *quizScenario) setup(r *runner) error {
	return s.setupPlayers(r, "bench quiz", "bench-q")
}

func (s *quizScenario) ramp(r *runner) {
	s.rep.Connected = s.rampPlayers(r, s.runPlayer)
}

// measure runs the activity: create, start, and per question push → answers
// → reveal.
func (s *quizScenario) measure(r *runner) {
	r.settle(s.settleFor)
	r.phase.Store("run")
	r.watch.start()
	r.winStart = time.Now()
	defer r.closeWindow()
	qs := make([]map[string]any, s.questions)
	for i := range qs {
		qs[i] = map[string]any{"text": "bench question " + strconv.Itoa(i+1), "options": []string{"a", "b", "c", "d"}, "answer": i % 4}
	}
	code, body, err := s.call("POST", "/api/activities", map[string]any{"room": s.room, "title": "bench quiz",
		"starts_at": time.Now().UTC().Format(time.RFC3339), "prize_cents": 100000, "answer_ms": s.answerMS, "questions": qs})
	var act struct{ ID string }
	if err != nil || code != 201 || json.Unmarshal(body, &act) != nil {
		s.noteErr(fmt.Sprintf("create %d", code))
		return
	}
	s.rep.Activity = act.ID
	base := "/api/activities/" + act.ID
	if code, _, _ := s.call("POST", base+"/start", nil); code != 200 {
		s.noteErr(fmt.Sprintf("start %d", code))
		return
	}
	for n := 1; n <= s.questions && r.runCtx.Err() == nil; n++ {
		s.question(r, base, n)
	}
}

// question pushes question n, waits for the answers, then reveals it when
// due and waits for the reveal to reach every player.
func (s *quizScenario) question(r *runner, base string, n int) {
	s.answered.Store(0)
	s.refused.Store(0)
	s.revealed.Store(0)
	s.firstSent.Store(0)
	s.lastAck.Store(0)
	s.curN.Store(int64(n))
	cpu0 := serverCPU(r)
	if code, body, _ := s.call("POST", base+"/questions/"+strconv.Itoa(n)+"/push", nil); code != 200 {
		s.noteErr(fmt.Sprintf("push %d %.80s", code, body))
		return
	}
	deadline := time.Now().Add(time.Duration(s.answerMS)*time.Millisecond + 30*time.Second)
	r.waitUntil(deadline, 5*time.Millisecond, func() bool { return s.answered.Load()+s.refused.Load() >= int64(s.rep.Connected) })
	cpu := serverCPU(r) - cpu0
	acks := s.answered.Load()
	s.rep.Answers += uint64(acks)
	s.rep.Refused += uint64(s.refused.Load())
	q := QuizQuestion{N: n, Answers: acks, ServerCPUMS: round3(float64(cpu) / 1e6)}
	if acks > 0 && cpu > 0 {
		q.USCPUPerAnswer = round3(float64(cpu.Microseconds()) / float64(acks))
		s.rep.cpuAll += cpu
		s.rep.USCPUAll = round3(float64(s.rep.cpuAll.Microseconds()) / float64(s.rep.Answers))
	}
	if first, last := s.firstSent.Load(), s.lastAck.Load(); acks > 0 && last > first {
		q.AnswerWindowMS = round3(float64(last-first) / 1e6)
	}
	s.rep.PerQuestion = append(s.rep.PerQuestion, q)
	if first, last := s.firstSent.Load(), s.lastAck.Load(); acks > 0 && last > first {
		win := time.Duration(last - first)
		if rate := float64(acks) / win.Seconds(); rate > s.rep.AnswersPerS {
			s.rep.AnswersPerS, s.rep.AnswerWindowMS = round1(rate), round3(float64(win)/1e6)
			if cpu > 0 {
				s.rep.ServerCPUS = round3(cpu.Seconds())
				s.rep.USCPUPerAnswer = round3(float64(cpu.Microseconds()) / float64(acks))
			}
		}
	}
	// Reveal as soon as the server accepts it (after the deadline).
	r.phase.Store("reveal")
	for r.runCtx.Err() == nil {
		at := time.Now()
		s.revealAt.Store(at.UnixNano())
		code, body, _ := s.call("POST", base+"/questions/"+strconv.Itoa(n)+"/reveal", nil)
		if code == 200 {
			s.rep.RevealCallMS = max(s.rep.RevealCallMS, round3(float64(time.Since(at))/1e6))
			break
		}
		if !bytes.Contains(body, []byte("too_early")) {
			s.noteErr(fmt.Sprintf("reveal %d %.80s", code, body))
			return
		}
		sleepCtx(r.runCtx, 20*time.Millisecond)
	}
	r.waitUntil(time.Now().Add(30*time.Second), 5*time.Millisecond, func() bool { return s.revealed.Load() >= int64(s.rep.Connected) })
	r.phase.Store("run")
}

// serverCPU is the server's CPU time so far (0 without --pid).
func serverCPU(r *runner) time.Duration {
	if r.watch == nil {
		return 0
	}
	d, _ := procCPU(r.watch.pid)
	return d
}

func (s *quizScenario) report(r *runner) {
	s.rep.Players, s.rep.Format, s.rep.Questions = s.players, s.format, s.questions
	s.rep.Reveal = s.reveal.Summary()
	s.rep.RevealReached = s.reveal.Count()
	s.errMu.Lock()
	if len(s.errs) > 0 {
		s.rep.Errors = s.errs
	}
	s.errMu.Unlock()
	r.rep.Quiz = &s.rep
	r.rep.Server = r.watch.finish(r.window)
	r.violation(uint64(s.players-s.rep.Connected), "players not connected")
	r.violation(s.rep.Refused, "answers refused")
	r.violation(uint64(len(s.rep.Errors)), "operator errors")
	r.violation(uint64(s.rep.Connected*s.questions)-min(uint64(s.rep.Connected*s.questions), s.rep.RevealReached), "reveals not received")
}

// runPlayer is player i: it answers each question as it arrives (the
// right option) and notes when the reveal reaches it.
func (s *quizScenario) runPlayer(ctx context.Context, i int) {
	conn, rw, ok := s.connect(ctx, i)
	if !ok {
		return
	}
	c := &quizClient{s: s, conn: conn}
	s.read(rw, func(data []byte) {
		if s.format == "proto" {
			c.onProto(data)
		} else {
			c.onJSON(data)
		}
	})
}

// quizClient is one connected player's state.
type quizClient struct {
	s    *quizScenario
	conn net.Conn
	seq  uint32
}

// quizMsg is a room message as the players read it.
type quizMsg struct {
	Kind string `json:"kind"`
	Data struct {
		N int `json:"n"`
	} `json:"data"`
}

func (c *quizClient) onJSON(data []byte) {
	switch {
	case isJSONType(data, "answer_ok"):
		c.s.acked()
	case isJSONType(data, "error"):
		c.s.refusedAnswer(jsonErrorCode(data))
	case bytes.Contains(data, []byte(`"kind":"quiz_`)):
		var b struct{ Messages []quizMsg }
		if json.Unmarshal(data, &b) != nil {
			return
		}
		for _, m := range b.Messages {
			c.onMessage(m.Kind, m.Data.N)
		}
	}
}

func (c *quizClient) onProto(data []byte) {
	eachFrame(data, func(f *pb.Frame) bool {
		switch {
		case f.Kind == pb.Kind_RESPONSE && f.Type == 3 && f.Code == 0:
			c.s.acked()
		case f.Kind == pb.Kind_RESPONSE && f.Type == 3:
			c.s.refusedAnswer(f.ErrorCode)
		case f.Kind == pb.Kind_NOTIFY && f.Type == 2 && bytes.Contains(f.Body, []byte("quiz_")):
			var b pb.Batch
			if proto.Unmarshal(f.Body, &b) != nil {
				return false
			}
			for _, m := range b.Messages {
				var d struct{ N int }
				_ = json.Unmarshal(m.Data, &d)
				c.onMessage(m.Kind, d.N)
			}
		}
		return true
	})
}

// onMessage answers a question (the right option: n-1 mod 4) and times a reveal.
func (c *quizClient) onMessage(kind string, n int) {
	s := c.s
	switch kind {
	case "quiz_question":
		opt := (n - 1) % 4
		payload, op := s.request(3, &c.seq, &pb.AnswerRequest{N: int32(n), Option: int32(opt)},
			`{"type":"answer","id":"q`+strconv.Itoa(n)+`","n":`+strconv.Itoa(n)+`,"option":`+strconv.Itoa(opt)+`}`)
		s.firstSent.CompareAndSwap(0, time.Now().UnixNano())
		if err := wsutil.WriteClientMessage(c.conn, op, payload); err != nil {
			s.refusedAnswer("write")
		}
	case "quiz_reveal":
		if at := s.revealAt.Load(); at > 0 {
			s.reveal.Record(time.Duration(time.Now().UnixNano() - at))
		}
		s.revealed.Add(1)
	}
}

func (s *quizScenario) acked() {
	s.answered.Add(1)
	s.lastAck.Store(time.Now().UnixNano())
}

func (s *quizScenario) refusedAnswer(code string) {
	s.refused.Add(1)
	s.noteErr("answer: " + code)
}
