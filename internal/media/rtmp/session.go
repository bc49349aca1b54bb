package rtmp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/handshake"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// outChunkSize is the chunk size we announce and use for everything we send.
const outChunkSize = 65536

// lockedConn serialises writes to the socket: the play loop writes raw
// chunks while the read loop may answer pings and acknowledgements.
type lockedConn struct {
	net.Conn
	wmu sync.Mutex
}

func (c *lockedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(p)
}

// session is the control part of one RTMP connection: handshake, connect,
// createStream, and the publish or play command, answered only after the
// caller decided (so a wrong key is refused with a proper onStatus).
type session struct {
	conn *lockedConn
	bc   *bytecounter.ReadWriter
	mrw  *message.ReadWriter

	app     string
	tcURL   string
	name    string // stream name without query
	query   string // raw query of the stream name (and of the app)
	publish bool
	cmd     *message.CommandAMF0 // the publish or play command
}

func newSession(c net.Conn) *session {
	lc := &lockedConn{Conn: c}
	bc := bytecounter.NewReadWriter(lc)
	return &session{conn: lc, bc: bc}
}

// handshake runs the RTMP handshake and reads commands until publish or
// play arrives.
func (s *session) handshake() error {
	keyIn, _, err := handshake.DoServer(s.bc, false)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if keyIn != nil {
		return errors.New("handshake: encrypted RTMP (RTMPE) is not supported")
	}
	s.mrw = message.NewReadWriter(s.bc, s.bc, false)

	connect, err := s.readCommand()
	if err != nil {
		return fmt.Errorf("read connect: %w", err)
	}
	if connect.Name != "connect" || len(connect.Arguments) < 1 {
		return fmt.Errorf("expected connect, got %q", connect.Name)
	}
	obj, ok := objectOf(connect.Arguments[0])
	if !ok {
		return errors.New("connect: no command object")
	}
	s.app, _ = obj.GetString("app")
	s.tcURL, _ = obj.GetString("tcUrl")
	if s.tcURL == "" {
		s.tcURL, _ = obj.GetString("tcurl")
	}
	var appQuery string
	s.app, appQuery, _ = strings.Cut(strings.Trim(s.app, "/"), "?")

	for _, m := range []message.Message{
		&message.SetWindowAckSize{Value: 2500000},
		&message.SetPeerBandwidth{Value: 2500000, Type: 2},
		&message.SetChunkSize{Value: outChunkSize},
		&message.CommandAMF0{
			ChunkStreamID: connect.ChunkStreamID, Name: "_result", CommandID: connect.CommandID,
			Arguments: []any{
				amf0.Object{{Key: "fmsVer", Value: "FMS/3,0,1,123"}, {Key: "capabilities", Value: float64(31)}},
				amf0.Object{
					{Key: "level", Value: "status"},
					{Key: "code", Value: "NetConnection.Connect.Success"},
					{Key: "description", Value: "Connection succeeded."},
					{Key: "objectEncoding", Value: float64(0)},
				},
			},
		},
	} {
		if err := s.mrw.Write(m); err != nil {
			return fmt.Errorf("connect reply: %w", err)
		}
	}

	for {
		cmd, err := s.readCommand()
		if err != nil {
			return fmt.Errorf("read command: %w", err)
		}
		switch cmd.Name {
		case "createStream":
			if err := s.mrw.Write(&message.CommandAMF0{
				ChunkStreamID: cmd.ChunkStreamID, Name: "_result", CommandID: cmd.CommandID,
				Arguments: []any{nil, float64(1)},
			}); err != nil {
				return fmt.Errorf("createStream reply: %w", err)
			}
		case "publish", "play":
			if len(cmd.Arguments) < 2 {
				return fmt.Errorf("%s without a stream name", cmd.Name)
			}
			name, ok := cmd.Arguments[1].(string)
			if !ok {
				return fmt.Errorf("%s: stream name is %T", cmd.Name, cmd.Arguments[1])
			}
			s.name, s.query, _ = strings.Cut(name, "?")
			if s.name == "" {
				// "rtmp://host/live/KEY" given as the server URL with an
				// empty stream name: the key is the last part of the app.
				if i := strings.LastIndexByte(s.app, '/'); i > 0 {
					s.app, s.name = s.app[:i], s.app[i+1:]
				}
			}
			if appQuery != "" {
				if s.query != "" {
					s.query += "&"
				}
				s.query += appQuery
			}
			s.publish = cmd.Name == "publish"
			s.cmd = cmd
			return nil
		}
		// releaseStream, FCPublish, getStreamLength, _checkbw…: no answer
		// is needed by ffmpeg, OBS or VLC.
	}
}

func (s *session) readCommand() (*message.CommandAMF0, error) {
	for {
		msg, err := s.mrw.Read()
		if err != nil {
			return nil, err
		}
		if cmd, ok := msg.(*message.CommandAMF0); ok {
			return cmd, nil
		}
	}
}

func objectOf(v any) (amf0.Object, bool) {
	switch o := v.(type) {
	case amf0.Object:
		return o, true
	case amf0.ECMAArray:
		return amf0.Object(o), true
	}
	return nil, false
}

// status sends an onStatus message on the media stream.
func (s *session) status(level, code, desc string) error {
	return s.mrw.Write(&message.CommandAMF0{
		ChunkStreamID: 5, MessageStreamID: 0x1000000, Name: "onStatus", CommandID: s.cmd.CommandID,
		Arguments: []any{nil, amf0.Object{
			{Key: "level", Value: level},
			{Key: "code", Value: code},
			{Key: "description", Value: desc},
		}},
	})
}

// refuse answers the pending publish/play with an error status.
func (s *session) refuse(code, desc string) error {
	return s.status("error", code, desc)
}

func (s *session) acceptPublish() error {
	return s.status("status", "NetStream.Publish.Start", "publish start")
}

func (s *session) acceptPlay() error {
	for _, m := range []message.Message{
		&message.UserControlStreamIsRecorded{StreamID: 1},
		&message.UserControlStreamBegin{StreamID: 1},
	} {
		if err := s.mrw.Write(m); err != nil {
			return err
		}
	}
	for _, st := range [][2]string{
		{"NetStream.Play.Reset", "play reset"},
		{"NetStream.Play.Start", "play start"},
		{"NetStream.Data.Start", "data start"},
		{"NetStream.Play.PublishNotify", "publish notify"},
	} {
		if err := s.status("status", st[0], st[1]); err != nil {
			return err
		}
	}
	return nil
}

// readLoop consumes what a player sends (acknowledgements, pings,
// deleteStream) until it closes or stops playing.
func (s *session) readLoop() error {
	for {
		msg, err := s.mrw.Read()
		if err != nil {
			return err
		}
		if cmd, ok := msg.(*message.CommandAMF0); ok {
			switch cmd.Name {
			case "deleteStream", "closeStream", "FCUnpublish":
				return io.EOF
			}
		}
	}
}
