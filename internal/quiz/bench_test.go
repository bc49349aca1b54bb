package quiz

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"roomcast/internal/redistest"
)

// BenchmarkStateAnswer: answers decided per second by one State (memory:
// one activity lock; Redis: one script on the activity's slot, auto-
// pipelined by rueidis from parallel callers). Each op is a new player's
// answer to question 1.
func BenchmarkStateAnswer(b *testing.B) {
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			var s State
			if name == "memory" {
				m, _ := NewMemory(context.Background(), nil, nil)
				defer m.Close()
				s = m
			} else {
				c := redistest.Client(b)
				s = NewRedis(c, RedisConfig{Prefix: redistest.Prefix(b, c)})
			}
			ctx := context.Background()
			id := "bench" + strconv.Itoa(b.N)
			_ = s.Init(ctx, Rules{ID: id, Count: 1, Answers: []int{1}, Options: []int{4}, AnswerMS: 1 << 40, Revivals: 1})
			s.Start(ctx, id)
			s.Push(ctx, id, 1, 0)
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					u := "p" + strconv.FormatInt(next.Add(1), 10)
					if _, err := s.Answer(ctx, id, Answer{User: u, N: 1, Option: 1, Now: 1, Enroll: &Player{User: u}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
