// wsproto.go: the protobuf encoding of the WebSocket protocol (issue 11).
// The same calls as the JSON frames (authenticate, sendAs), decoded from and
// answered with length-prefixed proto/roomcast/v1 Frames.

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"google.golang.org/protobuf/proto"

	"roomcast/internal/errs"
	"roomcast/internal/fanout"
	"roomcast/internal/message"
	"roomcast/internal/wire"
	"roomcast/internal/ws"
	pb "roomcast/proto/roomcast/v1"
)

// queryFormat parses /ws's ?format= (json, proto or empty).
func queryFormat(s string) (fanout.Encoding, error) {
	switch s {
	case "", "json":
		return fanout.JSON, nil
	case "proto":
		return fanout.Proto, nil
	}
	return fanout.JSON, errs.New(errs.BadRequest, `format must be "json" or "proto"`)
}

// negotiatedFormat picks the connection's encoding: the subprotocol the
// handshake selected, else ?format=, else JSON.
func negotiatedFormat(subprotocol string, query fanout.Encoding) fanout.Encoding {
	switch subprotocol {
	case wire.SubprotocolProto:
		return fanout.Proto
	case wire.SubprotocolJSON:
		return fanout.JSON
	}
	return query
}

// maxFramesPerMessage bounds the requests one WebSocket message may carry,
// so a 16 KiB message of empty frames cannot ask for thousands of answers.
const maxFramesPerMessage = 64

// onProtoMessage handles one binary message of a protobuf connection: its
// Frames in order (at most maxFramesPerMessage; the rest is refused). A frame that does not parse is answered with an error
// RESPONSE and the next one is read; a broken length (truncated varint,
// past the message, over --max-frame) is answered and ends the message.
// Either way the connection stays open.
func (g *WSHandler) onProtoMessage(c *ws.Conn, st *wsState, data []byte) {
	d := wire.NewDecoder(data, g.maxFrame)
	var f pb.Frame
	for n := 0; ; n++ {
		if n == maxFramesPerMessage {
			if ok, _ := d.Next(&f); ok {
				g.metrics.WSFrames.WithLabelValues("bad").Inc()
				g.sendProto(c, wire.ErrorFrame(0, 0, errs.New(errs.BadRequest,
					"at most "+strconv.Itoa(maxFramesPerMessage)+" frames per message; the rest was dropped")))
			}
			return
		}
		ok, err := d.Next(&f)
		if err != nil {
			// The answer carries what could be read of the frame's type and
			// seq (nothing after a broken length: 0 and 0).
			g.metrics.WSFrames.WithLabelValues("bad").Inc()
			code := wire.ErrBadFrame
			if errors.Is(err, wire.ErrFrameTooBig) {
				code = errs.TooLarge
			}
			typ, seq := f.GetType(), f.GetSeq()
			if !ok {
				typ, seq = 0, 0
			}
			g.sendProto(c, wire.ErrorFrame(typ, seq, errs.New(code, err.Error())))
			if !ok {
				return
			}
			continue
		}
		if !ok {
			return
		}
		g.onProtoFrame(c, st, &f)
	}
}

// onProtoFrame dispatches one client frame by type.
func (g *WSHandler) onProtoFrame(c *ws.Conn, st *wsState, f *pb.Frame) {
	if f.Kind != wire.Request {
		g.metrics.WSFrames.WithLabelValues("unknown").Inc()
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, errs.New(errs.BadRequest, "clients send REQUEST frames only")))
		return
	}
	switch f.Type {
	case wire.TypeHeartbeat:
		g.metrics.WSFrames.WithLabelValues("ping").Inc()
		online, ok := g.node.RoomOnline(st.room) // the hub's count, read once a second
		if !ok {                                 // not attached (yet): ask presence
			var err error
			if online, err = g.presence.Count(context.Background(), st.room); err != nil {
				g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, errs.New(errs.Unavailable, "online count unavailable")))
				return
			}
		}
		g.sendProto(c, g.response(f, "", &pb.Heartbeat{Online: int64(online)}))
	case wire.TypeAuth:
		g.metrics.WSFrames.WithLabelValues("auth").Inc()
		id, err := g.authenticate(c, st, f.Token)
		if err == errAttach {
			return // closed with 1011
		} else if err != nil {
			g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, err))
			return
		}
		g.sendProto(c, g.response(f, id.Claims.Sub, nil))
	case wire.TypeSend:
		g.metrics.WSFrames.WithLabelValues("send").Inc()
		g.onProtoSend(c, st, f)
	case wire.TypeAnswer:
		g.frames.answer.Inc()
		g.onProtoAnswer(c, st, f)
	case wire.TypeGrab:
		g.frames.grab.Inc()
		g.onProtoGrab(c, st, f)
	default:
		g.metrics.WSFrames.WithLabelValues("unknown").Inc()
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, errs.New(errs.BadRequest, "unknown frame type")))
	}
}

func (g *WSHandler) onProtoSend(c *ws.Conn, st *wsState, f *pb.Frame) {
	var body pb.SendRequest
	if err := proto.Unmarshal(f.Body, &body); err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, errs.New(wire.ErrBadFrame, "send body does not parse: "+err.Error())))
		return
	}
	if len(body.Data) > 0 && !json.Valid(body.Data) { // data is a JSON object in every encoding
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, errs.New(errs.BadJSON, "data is not valid JSON")))
		return
	}
	req := &message.Request{Kind: message.Kind(body.Kind), Text: body.Text, Scope: message.Scope(body.Scope),
		To: body.To, Data: json.RawMessage(body.Data), ClientMsgID: body.ClientMsgId}
	if body.VideoMs != nil {
		v := *body.VideoMs
		req.VideoMS = &v
	}
	if body.GiftId != "" || body.Count != 0 {
		req.Gift = &message.Gift{ID: body.GiftId, Count: int(body.Count)}
	}
	res, err := g.sendAs(st, req)
	if err != nil {
		g.sendProto(c, wire.ErrorFrame(f.Type, f.Seq, err))
		return
	}
	ack := &pb.SendAck{Seq: int64(res.Msg.Seq), Id: res.Msg.ID}
	if res.Msg.Kind == message.KindLike {
		ack.Likes = res.Likes
	}
	if res.Msg.VideoMS != nil {
		v := *res.Msg.VideoMS
		ack.VideoMs = &v
	}
	g.sendProto(c, g.response(f, "", ack))
}

// response is the ok RESPONSE to req with body (nil: none).
func (g *WSHandler) response(req *pb.Frame, user string, body proto.Message) *pb.Frame {
	out := &pb.Frame{Type: req.Type, Kind: wire.Response, Seq: req.Seq, UserId: user}
	if body != nil {
		b, err := proto.Marshal(body)
		if err != nil {
			return wire.ErrorFrame(req.Type, req.Seq, err) // internal error; cannot happen for our bodies
		}
		out.Body = b
	}
	return out
}

// sendProto writes one frame to c as its own binary message.
func (g *WSHandler) sendProto(c *ws.Conn, f *pb.Frame) {
	b, err := wire.AppendFrame(nil, f)
	if err != nil {
		g.log.Warn("gateway: encode protobuf frame", "err", err)
		return
	}
	_ = c.SendBinary(b)
}
