// wsjson.go: how a bench WebSocket reader handles a JSON frame. It does what
// the JS client (web/client/roomcast.js) does with every WebSocket message:
// parse the whole frame (JSON.parse there, encoding/json into the protocol's
// structs here, every message into a message.Message), then handle each
// message of a batch. So the load generator pays a real client's decoding
// cost, not a byte scanner's; the fields the checks need are then copied
// into the same frameInfo the protobuf decoder fills.

package bench

import (
	"encoding/json"
	"strings"

	"roomcast/internal/message"
)

// wsJSONFrame is a server frame as the JS client reads it (docs/protocol.md):
// batches, count updates, acks, errors, pongs.
type wsJSONFrame struct {
	Type     string            `json:"type"`
	Room     string            `json:"room"`
	Messages []message.Message `json:"messages"`
	Cursor   *uint64           `json:"cursor"`
	Epoch    string            `json:"epoch"`
	Reset    bool              `json:"reset"`
	Move     string            `json:"move"`
	Count    int64             `json:"count"` // "online"
	Total    int64             `json:"total"` // "likes"
	ID       string            `json:"id"`    // acks and errors
	Seq      *uint64           `json:"seq"`
	MsgID    string            `json:"msg_id"`
	Likes    *int64            `json:"likes"`
	User     string            `json:"user"`
	Error    *struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		RetryAfterMs int64  `json:"retry_after_ms"`
	} `json:"error"`
}

// decodeJSONFrame parses p completely into a fresh wsJSONFrame (as
// JSON.parse builds a fresh object) and fills fi from it.
func decodeJSONFrame(p []byte, fi *frameInfo) error {
	var f wsJSONFrame
	if err := json.Unmarshal(p, &f); err != nil {
		return err
	}
	fi.clear()
	fi.typ = frameType([]byte(f.Type))
	fi.id = []byte(f.ID)
	if f.Seq != nil {
		fi.seq, fi.hasSeq = *f.Seq, true
	}
	if f.Cursor != nil {
		fi.cursor, fi.hasCursor = *f.Cursor, true
	}
	fi.reset = f.Reset
	if f.Error != nil {
		fi.code = []byte(f.Error.Code)
		fi.retryAfterMs = f.Error.RetryAfterMs
	}
	for i := range f.Messages {
		m := &f.Messages[i]
		mi := msgInfo{seq: m.Seq}
		if t, ok := strings.CutPrefix(m.Text, benchMark); ok {
			if v, ok := parseUint(t); ok {
				mi.sent = int64(v)
			}
		}
		fi.msgs = append(fi.msgs, mi)
	}
	return nil
}
