package archive

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"unsafe"

	"roomcast/internal/message"
)

// Block layout (issue 10): the writer stores one SQL row per batch of one
// session's messages instead of one row per message, because a row costs
// about 10 µs of CPU on SQLite whatever the statement (three B-trees per
// row) — a fifth of a send's cost at saturation. A block's body holds its
// messages one after the other, each as
//
//	seq \t video_ms \t ts \t kind \t len(id) \t len(json) \t id json \n
//
// The lengths make the format independent of what the id or the JSON
// contain. A block carries min/max video_ms (client-sent video_ms can lag,
// so blocks of one session overlap in time) and is keyed by a hash of its
// message ids, so a retried batch writes the same keys and is ignored.
//
// A retraction is a row in archive_retracted, recorded only when its target
// is archived in the same session (a block or the old per-message table):
// the reader leaves retracted ids out and Counts subtracts them. A target
// sequenced on another node whose batch has not landed yet when the retract
// is written stays in the replay, as it did when retracting was a DELETE.
var blockSchema = []string{
	`CREATE TABLE IF NOT EXISTS archive_blocks (
		session_id VARCHAR(40) NOT NULL,
		block_key VARCHAR(32) NOT NULL,
		room VARCHAR(64) NOT NULL,
		min_video_ms BIGINT NOT NULL,
		max_video_ms BIGINT NOT NULL,
		n INTEGER NOT NULL,
		body TEXT NOT NULL,
		PRIMARY KEY (session_id, block_key)
	)`,
	`CREATE INDEX IF NOT EXISTS archive_blocks_min ON archive_blocks (session_id, min_video_ms, block_key, max_video_ms)`,
	`CREATE INDEX IF NOT EXISTS archive_blocks_max ON archive_blocks (session_id, max_video_ms, block_key, min_video_ms)`,
	`CREATE TABLE IF NOT EXISTS archive_retracted (
		session_id VARCHAR(40) NOT NULL,
		msg_id VARCHAR(128) NOT NULL,
		PRIMARY KEY (session_id, msg_id)
	)`,
}

// blockBytes caps a block's body so it fits MySQL's TEXT (64 KiB); a
// single message larger than that gets a block of its own (the message
// service caps a message far below it).
const blockBytes = 48 << 10

// blockRow is one block to insert.
type blockRow struct {
	session  string
	key      string
	room     string
	min, max int64
	n        int
	body     []byte
}

// appendLine appends m's line to b.
func appendLine(b []byte, m *message.Message) []byte {
	js := m.Encoded()
	b = strconv.AppendUint(b, m.Seq, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, videoMS(m), 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, m.TS, 10)
	b = append(b, '\t')
	b = append(b, m.Kind...)
	b = append(b, '\t')
	b = strconv.AppendInt(b, int64(len(m.ID)), 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, int64(len(js)), 10)
	b = append(b, '\t')
	b = append(b, m.ID...)
	b = append(b, js...)
	return append(b, '\n')
}

func videoMS(m *message.Message) int64 {
	if m.VideoMS != nil {
		return *m.VideoMS
	}
	return 0
}

var errBadBlock = errors.New("archive: malformed block")

// decodeBlock appends the entries of body to out.
func decodeBlock(out []Entry, body string) ([]Entry, error) {
	for len(body) > 0 {
		var f [6]string
		for i := range f {
			j := strings.IndexByte(body, '\t')
			if j < 0 {
				return out, errBadBlock
			}
			f[i], body = body[:j], body[j+1:]
		}
		seq, err1 := strconv.ParseUint(f[0], 10, 64)
		vms, err2 := strconv.ParseInt(f[1], 10, 64)
		ts, err3 := strconv.ParseInt(f[2], 10, 64)
		idLen, err4 := strconv.Atoi(f[4])
		jsLen, err5 := strconv.Atoi(f[5])
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil || idLen < 0 || jsLen < 0 ||
			idLen+jsLen+1 > len(body) || body[idLen+jsLen] != '\n' {
			return out, errBadBlock
		}
		out = append(out, Entry{MsgID: body[:idLen], Seq: seq, VideoMS: vms, TS: ts, Kind: f[3], Body: []byte(body[idLen : idLen+jsLen])})
		body = body[idLen+jsLen+1:]
	}
	return out, nil
}

// buildBlocks returns the blocks of batch: grouped by session in
// batch order, each body at most blockBytes (or one message), a message
// repeated within the batch written once. Its buffers are reused across
// batches: the result is valid until the next call.
func (a *Archive) buildBlocks(batch []entry) []blockRow {
	w := &a.blk
	rows := w.rows[:0]
	clear(w.seen)
	if w.seen == nil {
		w.seen = map[sessionMsg]struct{}{}
	}
	body := w.buf[:0]
	var cur *blockRow
	start := 0 // body offset of cur
	h := fnv.New128a()
	finish := func() {
		if cur == nil {
			return
		}
		cur.body = body[start:]
		var sum [16]byte
		cur.key = fmt.Sprintf("%x", h.Sum(sum[:0]))
		h.Reset()
		cur = nil
	}
	for len(batch) > 0 {
		session := batch[0].session
		rest := batch[:0:0]
		for _, e := range batch {
			if e.session != session {
				rest = append(rest, e)
				continue
			}
			k := sessionMsg{session, e.m.ID}
			if _, dup := w.seen[k]; dup {
				continue
			}
			w.seen[k] = struct{}{}
			if cur != nil && len(body)-start+len(e.m.Encoded())+64+len(e.m.ID) > blockBytes {
				finish()
			}
			if cur == nil {
				start = len(body)
				rows = append(rows, blockRow{session: session, room: e.m.Room, min: videoMS(e.m), max: videoMS(e.m)})
				cur = &rows[len(rows)-1]
			}
			v := videoMS(e.m)
			cur.min, cur.max = min(cur.min, v), max(cur.max, v)
			cur.n++
			body = appendLine(body, e.m)
			h.Write([]byte(e.m.ID))
			h.Write([]byte{0})
		}
		finish()
		batch = rest
	}
	// The bodies were sliced from body while it grew: re-slice them from
	// the final buffer (append may have moved it).
	off := 0
	for i := range rows {
		n := len(rows[i].body)
		rows[i].body = body[off : off+n]
		off += n
	}
	w.buf, w.rows = body, rows
	return rows
}

// bodyString is body as a string without copying it: the drivers copy
// or send an argument during Exec and keep no reference after it, and the
// writer does not touch the buffer until the next batch. It saves copying
// (and collecting) every archived byte once more.
func bodyString(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	return unsafe.String(&body[0], len(body))
}

type sessionMsg struct{ session, id string }

// blockWriter is the writer goroutine's reusable state.
type blockWriter struct {
	ins  *sql.Stmt
	buf  []byte
	rows []blockRow
	seen map[sessionMsg]struct{}
}

func (a *Archive) blockStmt(ctx context.Context) (*sql.Stmt, error) {
	if a.blk.ins != nil {
		return a.blk.ins, nil
	}
	s, err := a.side.Prepare(ctx, a.side.InsertIgnoreRaw(
		`INSERT INTO archive_blocks (session_id, block_key, room, min_video_ms, max_video_ms, n, body) VALUES (?, ?, ?, ?, ?, ?, ?)`))
	if err != nil {
		return nil, fmt.Errorf("archive: prepare insert: %w", err)
	}
	a.blk.ins = s
	return s, nil
}

// retract records, inside tx, that e (a retract) removes its target from
// session's replay: a row of the old table is deleted; a message in a block
// (of this batch or an earlier one) is recorded in archive_retracted.
func (a *Archive) retract(ctx context.Context, tx *sql.Tx, session, ref string) error {
	res, err := tx.ExecContext(ctx, a.st.Rebind(`DELETE FROM archive WHERE session_id = ? AND msg_id = ?`), session, ref)
	if err != nil {
		return fmt.Errorf("archive: retract: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	if _, ok := a.blk.seen[sessionMsg{session, ref}]; !ok {
		found, err := a.inBlocks(ctx, tx, session, ref)
		if err != nil || !found {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, a.side.InsertIgnore(`INSERT INTO archive_retracted (session_id, msg_id) VALUES (?, ?)`), session, ref)
	if err != nil {
		return fmt.Errorf("archive: retract: %w", err)
	}
	return nil
}

// inBlocks reports whether message id is in a block of session: a LIKE
// scan of the session's blocks (retracts are rare moderator actions, off
// the live path), confirmed by decoding the candidates.
func (a *Archive) inBlocks(ctx context.Context, tx *sql.Tx, session, id string) (bool, error) {
	// LIKE wildcards and escapes in the id become '_' (any one character):
	// the pattern matches a superset, which decoding narrows down.
	pat := "%\t" + strings.Map(func(r rune) rune {
		if r == '%' || r == '_' || r == '\\' {
			return '_'
		}
		return r
	}, id) + "{%"
	rows, err := tx.QueryContext(ctx, a.st.Rebind(`SELECT body FROM archive_blocks WHERE session_id = ? AND body LIKE ?`), session, pat)
	if err != nil {
		return false, fmt.Errorf("archive: retract: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return false, fmt.Errorf("archive: retract: %w", err)
		}
		es, _ := decodeBlock(nil, body)
		for _, e := range es {
			if e.MsgID == id {
				return true, nil
			}
		}
	}
	return false, rows.Err()
}
