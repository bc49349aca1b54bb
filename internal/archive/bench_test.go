package archive

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"roomcast/internal/message"
	"roomcast/internal/store"
)

// BenchmarkWrite is the writer's cost per archived message on SQLite (the
// default store): ns/op is per message, in batches as the writer forms
// them under a saturating send rate; cpu-ns/msg is the process's CPU
// during the writes (building the test messages is left out).
func BenchmarkWrite(b *testing.B) {
	a := benchArchive(b)
	const session = "0123456789abcdef0123456789abcdef01234567"
	mk := func(i int) entry {
		v := int64(i)
		m := &message.Message{ID: "n1-" + strconv.Itoa(i) + "-abcdef", Room: "bench", Kind: message.KindChat,
			Scope: message.ScopeRoom, Seq: uint64(i), TS: time.Now().UnixMilli(), VideoMS: &v,
			User: &message.User{ID: "u" + strconv.Itoa(i%16), Name: "bench user"}, Text: "hello from the bench " + strconv.Itoa(i)}
		m.Seal()
		return entry{session, m}
	}
	batch := make([]entry, 0, a.cfg.Batch)
	b.ReportAllocs()
	var cpu time.Duration // the writer's CPU, without building the test messages
	b.ResetTimer()
	for i := 0; i < b.N; {
		b.StopTimer()
		batch = batch[:0]
		for len(batch) < a.cfg.Batch {
			batch = append(batch, mk(i+len(batch)))
		}
		b.StartTimer()
		cpu0 := cpuTime()
		if err := a.write(batch); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - cpu0
		i += len(batch)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

// benchArchive is an archive in the default configuration on a fresh
// SQLite store, closed when b ends.
func benchArchive(b *testing.B) *Archive {
	st, err := store.OpenSQLite(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(context.Background(), Config{}, st, nil, quiet())
	if err != nil {
		st.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		a.Close(context.Background())
		st.Close()
	})
	return a
}

// cpuTime is the process's CPU time so far (user + system): the machine is
// shared, so wall time per message is mostly other processes' noise.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
