package archive

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
)

// blockChunk is how many blocks one query of a scan reads.
const blockChunk = 16

// collect returns the messages of session with from ≤ video_ms ≤ to,
// sorted by (video_ms, seq), retracted ones left out. It holds every such
// message up to and including the video_ms of the need-th one (all of them
// when there are fewer than need), and maybe some after it.
func (a *Archive) collect(ctx context.Context, session string, from, to int64, need int) ([]Entry, error) {
	return a.scan(ctx, session, from, to, need, true)
}

// collectDesc returns the messages of session with video_ms ≤ hi, sorted
// by (video_ms, seq): every one down to and including the video_ms of the
// need-th from the end, and maybe some before it.
func (a *Archive) collectDesc(ctx context.Context, session string, hi int64, need int) ([]Entry, error) {
	return a.scan(ctx, session, math.MinInt64, hi, need, false)
}

func (a *Archive) scan(ctx context.Context, session string, from, to int64, need int, asc bool) ([]Entry, error) {
	if from > to || need <= 0 {
		return nil, nil
	}
	gone, err := a.retracted(ctx, session)
	if err != nil {
		return nil, err
	}
	es, err := a.oldRows(ctx, session, from, to, need, asc)
	if err != nil {
		return nil, err
	}
	// Blocks in the order of their earliest (asc) or latest (desc) message:
	// once need messages are held, a block starting after (asc) or ending
	// before (desc) the need-th one's video_ms cannot change the answer.
	q := `SELECT block_key, min_video_ms, max_video_ms, body FROM archive_blocks
		WHERE session_id = ? AND max_video_ms >= ? AND min_video_ms <= ? AND (min_video_ms > ? OR (min_video_ms = ? AND block_key > ?))
		ORDER BY min_video_ms, block_key LIMIT ?`
	curMS, curKey := int64(math.MinInt64), ""
	if !asc {
		q = `SELECT block_key, min_video_ms, max_video_ms, body FROM archive_blocks
		WHERE session_id = ? AND max_video_ms >= ? AND min_video_ms <= ? AND (max_video_ms < ? OR (max_video_ms = ? AND block_key < ?))
		ORDER BY max_video_ms DESC, block_key DESC LIMIT ?`
		curMS, curKey = math.MaxInt64, "~" // after every hex key
	}
	for {
		es = tidy(es, gone, from, to)
		bound, full := int64(0), len(es) >= need
		if full && asc {
			bound = es[need-1].VideoMS
		} else if full {
			bound = es[len(es)-need].VideoMS
		}
		done, n := false, 0
		rows, err := a.st.Query(ctx, q, session, from, to, curMS, curMS, curKey, blockChunk)
		if err != nil {
			return nil, fmt.Errorf("archive: query: %w", err)
		}
		for rows.Next() {
			var lo, hi int64
			var body string
			if err := rows.Scan(&curKey, &lo, &hi, &body); err != nil {
				rows.Close()
				return nil, fmt.Errorf("archive: scan: %w", err)
			}
			n++
			if full && ((asc && lo > bound) || (!asc && hi < bound)) {
				done = true
				break
			}
			if curMS = lo; !asc {
				curMS = hi
			}
			if es, err = decodeBlock(es, body); err != nil {
				rows.Close()
				return nil, fmt.Errorf("archive: session %s block %s: %w", session, curKey, err)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("archive: query: %w", err)
		}
		if done || n < blockChunk {
			return tidy(es, gone, from, to), nil
		}
	}
}

// tidy keeps the entries of es within [from, to] that are not retracted,
// sorted by (video_ms, seq), each message once.
func tidy(es []Entry, gone map[string]struct{}, from, to int64) []Entry {
	es = slices.DeleteFunc(es, func(e Entry) bool {
		_, r := gone[e.MsgID]
		return r || e.VideoMS < from || e.VideoMS > to
	})
	slices.SortFunc(es, func(x, y Entry) int {
		return cmp.Or(cmp.Compare(x.VideoMS, y.VideoMS), cmp.Compare(x.Seq, y.Seq), cmp.Compare(x.MsgID, y.MsgID))
	})
	return slices.CompactFunc(es, func(x, y Entry) bool { return x.MsgID == y.MsgID && x.VideoMS == y.VideoMS })
}

// retracted is the set of retracted message ids of session.
func (a *Archive) retracted(ctx context.Context, session string) (map[string]struct{}, error) {
	rows, err := a.st.Query(ctx, `SELECT msg_id FROM archive_retracted WHERE session_id = ?`, session)
	if err != nil {
		return nil, fmt.Errorf("archive: query: %w", err)
	}
	defer rows.Close()
	var out map[string]struct{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("archive: scan: %w", err)
		}
		if out == nil {
			out = map[string]struct{}{}
		}
		out[id] = struct{}{}
	}
	return out, rows.Err()
}

// oldRows reads the per-message table of archives written before blocks:
// the first (asc) or last need rows in [from, to], completed with every
// row sharing the boundary video_ms.
func (a *Archive) oldRows(ctx context.Context, session string, from, to int64, need int, asc bool) ([]Entry, error) {
	order := `video_ms, seq`
	if !asc {
		order = `video_ms DESC, seq DESC`
	}
	es, err := a.query(ctx, `SELECT `+entryCols+` FROM archive WHERE session_id = ? AND video_ms >= ? AND video_ms <= ? ORDER BY `+order+` LIMIT ?`,
		session, from, to, need)
	if err != nil || len(es) < need {
		return es, err
	}
	if b := es[len(es)-1].VideoMS; asc {
		to = b
	} else {
		from = b
	}
	return a.query(ctx, `SELECT `+entryCols+` FROM archive WHERE session_id = ? AND video_ms >= ? AND video_ms <= ? ORDER BY `+order+` LIMIT ?`,
		session, from, to, need+tieReadCap)
}
