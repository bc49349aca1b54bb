package archive

import (
	"cmp"
	"context"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"roomcast/internal/message"
	"roomcast/internal/redistest"
	"roomcast/internal/store"
)

// eachDialect runs fn with an archive (its writer idle: the test calls
// write itself) on SQLite, PostgreSQL and MariaDB.
func eachDialect(t *testing.T, fn func(t *testing.T, st *store.Store, a *Archive)) {
	run := func(t *testing.T, st *store.Store) {
		defer st.Close()
		a, err := New(context.Background(), Config{}, st, nil, quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close(context.Background())
		fn(t, st, a)
	}
	t.Run("sqlite", func(t *testing.T) {
		st, err := store.OpenSQLite(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		run(t, st)
	})
	for name, dsn := range map[string]func(testing.TB) string{"postgres": redistest.Postgres, "mysql": redistest.MySQL} {
		t.Run(name, func(t *testing.T) {
			st, err := store.Open(context.Background(), dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			run(t, st)
		})
	}
}

// oldRow writes e into the per-message table of archives from before blocks.
func oldRow(t *testing.T, st *store.Store, session string, e Entry) {
	t.Helper()
	if _, err := st.DB().Exec(st.Rebind(`INSERT INTO archive (session_id, msg_id, room, seq, video_ms, ts, kind, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		session, e.MsgID, "r", int64(e.Seq), e.VideoMS, e.TS, e.Kind, string(e.Body)); err != nil {
		t.Fatal(err)
	}
}

// model is the brute-force archive the property test compares against.
type model struct {
	es   map[string][]Entry // session → every archived message
	gone map[string]bool    // session + "/" + msg id retracted
}

func (md *model) sorted(session string, keep func(Entry) bool) []Entry {
	var out []Entry
	for _, e := range md.es[session] {
		if !md.gone[session+"/"+e.MsgID] && keep(e) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(x, y Entry) int {
		return cmp.Or(cmp.Compare(x.VideoMS, y.VideoMS), cmp.Compare(x.Seq, y.Seq), cmp.Compare(x.MsgID, y.MsgID))
	})
	return out
}

func ids(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.MsgID)
		b.WriteByte(' ')
	}
	return b.String()
}

// Paging over blocks whose video_ms ranges overlap (client-sent video_ms
// lags up to 30 s), merged with rows of the old per-message table and with
// retractions in the same and in later batches, returns exactly what a
// brute-force sort of all messages gives; Around and Counts too.
func TestArchiveBlocksMatchBruteForce(t *testing.T) {
	eachDialect(t, func(t *testing.T, st *store.Store, a *Archive) {
		ctx := context.Background()
		rng := rand.New(rand.NewSource(10))
		md := &model{es: map[string][]Entry{}, gone: map[string]bool{}}
		sessions := []string{"s", "t"}
		// Old rows, as written before blocks existed.
		for i := range 150 {
			s := sessions[i%2]
			e := Entry{MsgID: "old" + strconv.Itoa(i), Seq: uint64(i), VideoMS: int64(rng.Intn(60000)), TS: 1, Kind: "chat",
				Body: []byte(`{"id":"old` + strconv.Itoa(i) + `"}`)}
			oldRow(t, st, s, e)
			md.es[s] = append(md.es[s], e)
		}
		seq := 1000
		for range 25 {
			var batch []entry
			for range 1 + rng.Intn(300) {
				s := sessions[rng.Intn(2)]
				seq++
				// Crowded milliseconds and up to 30 s of lag.
				v := int64(seq/4*10) - int64(rng.Intn(4)*10000)
				m := msg(seq, max(v, 0))
				m.Room = "r"
				if rng.Intn(10) == 0 && len(md.es[s]) > 0 {
					target := md.es[s][rng.Intn(len(md.es[s]))].MsgID
					m.Kind, m.Ref, m.Text = message.KindRetract, target, ""
					md.gone[s+"/"+target] = true
				}
				if rng.Intn(50) == 0 {
					m.Text = "line\nbreak\ttab " + strings.Repeat("x", rng.Intn(20000))
				}
				m.Seal()
				batch = append(batch, entry{s, m})
				md.es[s] = append(md.es[s], Entry{MsgID: m.ID, Seq: m.Seq, VideoMS: *m.VideoMS, TS: m.TS, Kind: string(m.Kind), Body: m.Encoded()})
			}
			if err := a.write(batch); err != nil {
				t.Fatal(err)
			}
			if rng.Intn(3) == 0 { // a retried batch changes nothing
				if err := a.write(batch); err != nil {
					t.Fatal(err)
				}
			}
		}
		// A retract whose target was never archived here is not counted.
		ghost := msg(99999, 5)
		ghost.Kind, ghost.Ref = message.KindRetract, "never-archived"
		ghost.Seal()
		if err := a.write([]entry{{"s", ghost}}); err != nil {
			t.Fatal(err)
		}
		md.es["s"] = append(md.es["s"], Entry{MsgID: ghost.ID, Seq: ghost.Seq, VideoMS: 5, TS: ghost.TS, Kind: "retract", Body: ghost.Encoded()})

		counts, err := a.Counts(ctx, []string{"s", "t", "none"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sessions {
			want := md.sorted(s, func(Entry) bool { return true })
			if counts[s] != int64(len(want)) {
				t.Fatalf("counts[%s] = %d, want %d", s, counts[s], len(want))
			}
			all, err := a.Range(ctx, s, 0, 1<<62, MaxLimit)
			if err != nil || ids(all.Entries) != ids(want) {
				t.Fatalf("%s: whole range differs (%v)", s, err)
			}
			for i, e := range all.Entries {
				if w := want[i]; e.Seq != w.Seq || e.VideoMS != w.VideoMS || e.TS != w.TS || e.Kind != w.Kind || string(e.Body) != string(w.Body) {
					t.Fatalf("%s: entry %d = %+v, want %+v", s, i, e, w)
				}
			}
			for range 30 {
				from, to := int64(rng.Intn(40000)), int64(rng.Intn(80000))
				limit := 1 + rng.Intn(60)
				in := md.sorted(s, func(e Entry) bool { return e.VideoMS >= from && e.VideoMS <= to })
				var got []Entry
				for f := from; ; {
					pg, err := a.Range(ctx, s, f, to, limit)
					if err != nil {
						t.Fatal(err)
					}
					n := len(pg.Entries)
					if n > limit && pg.Entries[0].VideoMS != pg.Entries[n-1].VideoMS {
						t.Fatalf("page of %d > limit %d spans several ms", n, limit)
					}
					got = append(got, pg.Entries...)
					if pg.NextFromMS == nil {
						break
					}
					if n > 0 && pg.Entries[n-1].VideoMS >= *pg.NextFromMS {
						t.Fatalf("page splits ms %d", *pg.NextFromMS)
					}
					f = *pg.NextFromMS
				}
				if ids(got) != ids(in) {
					t.Fatalf("%s [%d,%d] limit %d: pages\n%s\nwant\n%s", s, from, to, limit, ids(got), ids(in))
				}
				tms, count := int64(rng.Intn(70000)), 1+rng.Intn(80)
				before := md.sorted(s, func(e Entry) bool { return e.VideoMS < tms })
				before = before[max(0, len(before)-count):]
				es, err := a.Around(ctx, s, tms, count)
				if err != nil || ids(es) != ids(before) {
					t.Fatalf("%s around %d count %d: %s want %s (%v)", s, tms, count, ids(es), ids(before), err)
				}
			}
		}
	})
}

// A batch larger than a block's cap is stored as several blocks, a message
// larger than the cap in a block of its own; and retracting a message of
// the old per-message table removes it there.
func TestArchiveBlockSplitAndOldRetract(t *testing.T) {
	eachDialect(t, func(t *testing.T, st *store.Store, a *Archive) {
		ctx := context.Background()
		oldRow(t, st, "s", Entry{MsgID: "old", Seq: 1, VideoMS: 1, TS: 1, Kind: "chat", Body: []byte(`{"id":"old"}`)})
		var batch []entry
		for i := range 40 {
			m := msg(i+10, int64(i))
			m.Text = strings.Repeat("é", 1000*(1+i%3))
			if i == 7 {
				m.Text = strings.Repeat("z", blockBytes+100)
			}
			m.Seal()
			batch = append(batch, entry{"s", m})
		}
		r := msg(100, 50)
		r.Kind, r.Ref, r.Text = message.KindRetract, "old", ""
		batch = append(batch, entry{"s", r})
		if err := a.write(batch); err != nil {
			t.Fatal(err)
		}
		var blocks int
		var maxBody int
		rows, err := st.Query(ctx, `SELECT body FROM archive_blocks WHERE session_id = ?`, "s")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b string
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			blocks++
			if strings.Count(b, "\n") > 1 {
				maxBody = max(maxBody, len(b))
			}
		}
		rows.Close()
		if blocks < 3 || maxBody > blockBytes {
			t.Fatalf("%d blocks, largest multi-message body %d bytes", blocks, maxBody)
		}
		pg, err := a.Range(ctx, "s", 0, 1000, MaxLimit)
		if err != nil || len(pg.Entries) != 41 || pg.Entries[0].MsgID != "m10" {
			t.Fatalf("range: %d entries, %v", len(pg.Entries), err)
		}
		if c, _ := a.Counts(ctx, []string{"s"}); c["s"] != 41 {
			t.Fatalf("counts %v", c)
		}
	})
}

func TestDecodeBlockRejectsGarbage(t *testing.T) {
	m := msg(1, 7)
	m.ID = "we\tird\nid"
	m.TS = time.Now().UnixMilli()
	m.Seal()
	b := appendLine(nil, m)
	es, err := decodeBlock(nil, string(b))
	if err != nil || len(es) != 1 || es[0].MsgID != m.ID || string(es[0].Body) != string(m.Encoded()) || es[0].VideoMS != 7 {
		t.Fatalf("round trip: %+v %v", es, err)
	}
	for _, bad := range []string{"1\t2\t3\tchat\t5\t", "1\t2\t3\tchat\t99\t1\tab\n", "x\t2\t3\tchat\t1\t1\tab\n", string(b[:len(b)-1])} {
		if _, err := decodeBlock(nil, bad); err == nil {
			t.Fatalf("%q decoded", bad)
		}
	}
}
