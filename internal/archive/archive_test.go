package archive

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"roomcast/internal/message"
	"roomcast/internal/redistest"
	"roomcast/internal/store"
	wait "roomcast/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
}

func msg(i int, videoMS int64) *message.Message {
	v := videoMS
	return &message.Message{ID: "m" + strconv.Itoa(i), Room: "r", Kind: message.KindChat, Scope: message.ScopeRoom,
		Seq: uint64(i), TS: time.Now().UnixMilli(), Text: "t" + strconv.Itoa(i), VideoMS: &v}
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// proxy is a TCP proxy the test can cut (an SQL outage) and restore.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
		go func() { defer p.wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
	}
}

// cut closes every connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// An SQL outage delays the archive without losing what fits in the buffer;
// what does not fit is counted, not silently dropped.
func TestArchiveSurvivesSQLOutage(t *testing.T) {
	dsn := redistest.Postgres(t)
	p := newProxy(t, redistest.PostgresAddr)
	st, err := store.Open(context.Background(), strings.Replace(dsn, redistest.PostgresAddr, p.ln.Addr().String(), 1))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := New(context.Background(), Config{Buffer: 50, Batch: 20, Linger: 10 * time.Millisecond}, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		pg, err := a.Range(context.Background(), "s1", 0, 1<<62, MaxLimit)
		if err != nil {
			return -1
		}
		return len(pg.Entries)
	}
	for i := 1; i <= 30; i++ {
		a.Add("s1", msg(i, int64(i*10)))
	}
	wait.WaitFor(t, "30 archived", 20*time.Second, func() bool { return count() == 30 })

	p.cut()
	a.Add("s1", msg(31, 310)) // the writer takes it and starts retrying
	wait.WaitFor(t, "a failed write", 20*time.Second, func() bool { return value(a.met.Retries) > 0 })
	for i := 32; i <= 130; i++ { // 99 more: the in-flight batch holds 1, the queue 50
		a.Add("s1", msg(i, int64(i*10)))
	}
	dropped := value(a.met.Dropped)
	if dropped != 49 {
		t.Fatalf("dropped %v during the outage, want 49 (99 added, 50 queued)", dropped)
	}
	p.restore()
	wait.WaitFor(t, "the queue written after the outage", 30*time.Second, func() bool { return count() == 30+1+50 })
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Paging never splits one millisecond, Around is strictly before, retried
// inserts do not duplicate, and the Bilibili export escapes text.
// It runs on each SQL dialect: SQLite, PostgreSQL and MariaDB.
func TestArchiveQueries(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := store.OpenSQLite(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		testQueries(t, st)
	})
	for name, dsn := range map[string]func(testing.TB) string{"postgres": redistest.Postgres, "mysql": redistest.MySQL} {
		t.Run(name, func(t *testing.T) {
			st, err := store.Open(context.Background(), dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			testQueries(t, st)
		})
	}
}

func testQueries(t *testing.T, st *store.Store) {
	defer st.Close()
	a, err := New(context.Background(), Config{Linger: time.Millisecond, LikeEvery: 50 * time.Millisecond}, st, nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background()) // runs before st.Close
	// 10 messages at 100 ms, then one each at 200, 300, 400; one added twice.
	for i := 1; i <= 10; i++ {
		a.Add("s", msg(i, 100))
	}
	for i := 11; i <= 13; i++ {
		a.Add("s", msg(i, int64(i-9)*100))
	}
	a.Add("s", msg(12, 300))
	gone := msg(20, 450)
	a.Add("s", gone)
	retract := msg(21, 460)
	retract.Kind, retract.Ref, retract.Text = message.KindRetract, gone.ID, ""
	a.Add("s", retract)
	evil := msg(14, 500)
	evil.Text = `</d><script>alert(1)</script>&`
	a.Add("s", evil)
	ctx := context.Background()
	wait.WaitFor(t, "15 archived (a retracted one removed)", 10*time.Second, func() bool {
		pg, _ := a.Range(ctx, "s", 0, 1<<62, MaxLimit)
		return len(pg.Entries) == 15
	})
	for _, e := range func() []Entry { pg, _ := a.Range(ctx, "s", 0, 1<<62, MaxLimit); return pg.Entries }() {
		if e.MsgID == gone.ID {
			t.Fatal("a retracted message is still in the archive")
		}
	}
	pg, err := a.Range(ctx, "s", 0, 1<<62, 3)
	if err != nil || len(pg.Entries) != 10 || pg.NextFromMS == nil || *pg.NextFromMS != 200 {
		t.Fatalf("page over a crowded millisecond: %d entries, next %v, %v", len(pg.Entries), pg.NextFromMS, err)
	}
	pg, _ = a.Range(ctx, "s", 200, 1<<62, 2)
	if len(pg.Entries) != 2 || pg.Entries[0].VideoMS != 200 || pg.NextFromMS == nil || *pg.NextFromMS != 400 {
		t.Fatalf("second page: %+v next %v", pg.Entries, pg.NextFromMS)
	}
	pg, _ = a.Range(ctx, "s", 400, 455, 2)
	if len(pg.Entries) != 1 || pg.NextFromMS != nil {
		t.Fatalf("last page: %+v next %v", pg.Entries, pg.NextFromMS)
	}
	es, _ := a.Around(ctx, "s", 300, 2)
	if len(es) != 2 || es[0].VideoMS != 100 || es[1].VideoMS != 200 {
		t.Fatalf("around 300: %+v", es)
	}
	counts, _ := a.Counts(ctx, []string{"s", "none"})
	if counts["s"] != 15 || counts["none"] != 0 {
		t.Fatalf("counts %v", counts)
	}
	// Likes become one summary per interval, at the newest like's position.
	a.Like("l", "r", 1000, 41)
	a.Like("l", "r", 1200, 42)
	a.Like("l", "r", 1100, 43)
	wait.WaitFor(t, "a like summary", 10*time.Second, func() bool {
		pg, _ := a.Range(ctx, "l", 0, 1<<62, 10)
		return len(pg.Entries) == 1
	})
	pg, _ = a.Range(ctx, "l", 0, 1<<62, 10)
	if e := pg.Entries[0]; e.Kind != "like" || e.VideoMS != 1200 || !strings.Contains(string(e.Body), `"data":{"count":3,"total":43}`) {
		t.Fatalf("like summary: %+v %s", e, e.Body)
	}
	var b strings.Builder
	pg, _ = a.Range(ctx, "s", 500, 500, 5)
	if err := WriteBilibili(&b, pg.Entries); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `>&lt;/d&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;</d>`) || !strings.Contains(b.String(), `p="0.50000,1,25,16777215,`) {
		t.Fatalf("export:\n%s", b.String())
	}
}
