package archive

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strconv"
	"strings"
)

// Entry is one archived message.
type Entry struct {
	MsgID   string
	Seq     uint64
	VideoMS int64
	TS      int64
	Kind    string
	Body    []byte // the message's JSON (with video_ms)
}

// Limits of the replay queries.
const (
	MaxLimit   = 5000
	MaxCount   = 1000
	tieReadCap = 10000 // rows sharing one video_ms read into a single page at most
)

// Page is the answer to Range.
type Page struct {
	Entries []Entry
	// NextFromMS is the from_ms of the next page; nil when this was the last.
	NextFromMS *int64
}

const entryCols = `msg_id, seq, video_ms, ts, kind, body`

func (a *Archive) query(ctx context.Context, q string, args ...any) ([]Entry, error) {
	rows, err := a.st.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("archive: query: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var seq int64
		var body string
		if err := rows.Scan(&e.MsgID, &seq, &e.VideoMS, &e.TS, &e.Kind, &body); err != nil {
			return nil, fmt.Errorf("archive: scan: %w", err)
		}
		e.Seq, e.Body = uint64(seq), []byte(body)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Range returns up to limit messages of session with fromMS ≤ video_ms ≤
// toMS, ordered by video_ms then seq. A page never splits the messages of
// one video_ms, so passing NextFromMS back as fromMS continues exactly where
// the page ended (a page may hold more than limit messages only when more
// than limit share one millisecond).
func (a *Archive) Range(ctx context.Context, session string, fromMS, toMS int64, limit int) (Page, error) {
	es, err := a.collect(ctx, session, fromMS, toMS, limit+1)
	if err != nil {
		return Page{}, err
	}
	if len(es) <= limit {
		return Page{Entries: es}, nil
	}
	next := es[limit].VideoMS
	cut := limit
	for cut > 0 && es[cut-1].VideoMS == next {
		cut--
	}
	if cut > 0 {
		return Page{Entries: es[:cut], NextFromMS: &next}, nil
	}
	// More than limit messages in one millisecond: return all of them.
	if es, err = a.collect(ctx, session, next, next, tieReadCap); err != nil {
		return Page{}, err
	}
	p := Page{Entries: es[:min(len(es), tieReadCap)]}
	if n := next + 1; n <= toMS {
		more, err := a.collect(ctx, session, n, toMS, 1)
		if err != nil {
			return Page{}, err
		}
		if len(more) > 0 {
			p.NextFromMS = &more[0].VideoMS
		}
	}
	return p, nil
}

// Around returns the count messages of session with video_ms strictly
// before tMS, in order (the chat panel after a seek).
func (a *Archive) Around(ctx context.Context, session string, tMS int64, count int) ([]Entry, error) {
	if count <= 0 || tMS == math.MinInt64 {
		return nil, nil
	}
	es, err := a.collectDesc(ctx, session, tMS-1, count)
	if err != nil {
		return nil, err
	}
	if len(es) > count {
		es = es[len(es)-count:]
	}
	return es, nil
}

// Counts returns the number of archived messages of each session: the
// messages of its blocks less the retracted ones, plus its rows of the old
// per-message table.
func (a *Archive) Counts(ctx context.Context, sessions []string) (map[string]int64, error) {
	out := make(map[string]int64, len(sessions))
	if len(sessions) == 0 {
		return out, nil
	}
	args := make([]any, len(sessions))
	for i, s := range sessions {
		args[i] = s
	}
	in := `session_id IN (?` + strings.Repeat(", ?", len(sessions)-1) + `) GROUP BY session_id`
	for _, q := range []struct {
		sql  string
		sign int64
	}{
		{`SELECT session_id, COUNT(*) FROM archive WHERE ` + in, 1},
		{`SELECT session_id, SUM(n) FROM archive_blocks WHERE ` + in, 1},
		{`SELECT session_id, COUNT(*) FROM archive_retracted WHERE ` + in, -1},
	} {
		if err := a.sumInto(ctx, out, q.sign, q.sql, args); err != nil {
			return nil, err
		}
	}
	for s, n := range out {
		if n <= 0 {
			delete(out, s)
		}
	}
	return out, nil
}

func (a *Archive) sumInto(ctx context.Context, out map[string]int64, sign int64, q string, args []any) error {
	rows, err := a.st.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("archive: counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return fmt.Errorf("archive: counts: %w", err)
		}
		out[s] += sign * n
	}
	return rows.Err()
}

// AppendJSON appends {"messages":[…],"next_from_ms":N|null} for p.
func AppendJSON(b []byte, es []Entry, next *int64) []byte {
	b = append(b, `{"messages":[`...)
	for i, e := range es {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.Body...)
	}
	b = append(b, `],"next_from_ms":`...)
	if next == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, *next, 10)
	}
	return append(b, '}')
}

// bilibiliMsg is what the export reads of a message.
type bilibiliMsg struct {
	User *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"user"`
	Text string `json:"text"`
	Gift *struct {
		Name  string `json:"name"`
		ID    string `json:"id"`
		Count int    `json:"count"`
	} `json:"gift"`
}

// WriteBilibili writes entries as a Bilibili XML danmaku file:
//
//	<i><d p="time_s,mode,size,color,unix_ts,pool,user_hash,id">text</d>…</i>
//
// Chat scrolls (mode 1, white); gifts and system notices sit at the top
// (mode 5, gold / grey). Other kinds (enter, leave, function messages
// without text) are left out. Text is XML-escaped.
func WriteBilibili(w io.Writer, es []Entry) error {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<i><chatserver>roomcast</chatserver><chatid>0</chatid><mission>0</mission><maxlimit>")
	b.WriteString(strconv.Itoa(len(es)))
	b.WriteString("</maxlimit><state>0</state><real_name>0</real_name><source>roomcast</source>\n")
	for _, e := range es {
		var m bilibiliMsg
		if json.Unmarshal(e.Body, &m) != nil {
			continue
		}
		mode, color, text := 1, 0xffffff, m.Text
		switch e.Kind {
		case "chat":
		case "gift":
			if m.Gift == nil {
				continue
			}
			name := m.Gift.Name
			if name == "" {
				name = m.Gift.ID
			}
			who := ""
			if m.User != nil {
				who = m.User.Name
			}
			mode, color, text = 5, 0xffd700, fmt.Sprintf("%s sent %s ×%d", who, name, m.Gift.Count)
		case "system", "notice":
			mode, color = 5, 0xaaaaaa
		default:
			continue
		}
		if text == "" {
			continue
		}
		user := ""
		if m.User != nil {
			user = m.User.ID
		}
		fmt.Fprintf(&b, `<d p="%.5f,%d,25,%d,%d,0,%08x,%d">`, float64(e.VideoMS)/1000, mode, color, e.TS/1000, crc32.ChecksumIEEE([]byte(user)), e.Seq)
		if err := xml.EscapeText(&b, []byte(text)); err != nil {
			return err
		}
		b.WriteString("</d>\n")
	}
	b.WriteString("</i>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
