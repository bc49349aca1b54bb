package app

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"roomcast/internal/config"
	"roomcast/internal/quiz"
	pb "roomcast/proto/roomcast/v1"
)

// TestQuizProtobufAnswer: a protobuf client receives the question, answers
// with a type 3 AnswerRequest, gets its sealed result in an AnswerAck (and
// already_answered, code 166, the second time) and opens it with the key
// of the quiz_reveal.
func TestQuizProtobufAnswer(t *testing.T) {
	t.Parallel() // most of it is waiting for answer windows to close
	s := startServer(t, func(c *config.Config) { c.QuizDelay, c.Heartbeat = 0, quizHeartbeat })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	anchor := s.createRoom("qpb")
	id := createQuiz(t, s, anchor, quizBody("qpb", 10, quizWindowMS)).ID
	c, _, err := s.dialProto(ctx, "room=qpb&token="+s.token("pb1", "", 1), true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.batch(ctx); err != nil { // attached
		t.Fatal(err)
	}
	s.opStep(anchor, "/api/activities/"+id+"/start")
	s.opStep(anchor, "/api/activities/"+id+"/questions/1/push")
	find := func(kind string) json.RawMessage {
		for {
			b, err := c.batch(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", kind, err)
			}
			for _, m := range b.Messages {
				if m.Kind == kind {
					return m.Data
				}
			}
		}
	}
	var q quiz.QuestionData
	if err := json.Unmarshal(find("quiz_question"), &q); err != nil || q.N != 1 || q.Activity != id {
		t.Fatalf("question: %+v %v", q, err)
	}
	r := c.call(ctx, &pb.Frame{Type: 3}, &pb.AnswerRequest{N: 1, Option: 1})
	ack := body(t, r, &pb.AnswerAck{})
	if r.Code != 0 || ack.Activity != id || ack.N != 1 || len(ack.Sealed) < 12+16 {
		t.Fatalf("answer: %v %v", r, ack)
	}
	if r := c.call(ctx, &pb.Frame{Type: 3}, &pb.AnswerRequest{N: 1, Option: 1, Activity: id}); r.Code != 166 || r.ErrorCode != quiz.CodeAlreadyAnswered {
		t.Fatalf("twice: %v", r)
	}
	s.revealWhenDue(anchor, id, 1)
	var rv quiz.RevealData
	if err := json.Unmarshal(find("quiz_reveal"), &rv); err != nil {
		t.Fatal(err)
	}
	if res := openSealed(t, q, rv, ack.Sealed); !res.Correct || !res.Alive || res.N != 1 {
		t.Fatalf("result %+v", res)
	}
}
