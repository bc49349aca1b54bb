package ws

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// permessage-deflate (RFC 7692) with no context takeover in both
// directions: every message is compressed and decompressed on its own, so a
// Prepared message is deflated once and the same bytes go to every
// compressed connection, and no connection keeps a compressor (~600 KiB) or
// decompressor (~40 KiB) between messages. Both come from pools.

// deflateResponse is the Sec-WebSocket-Extensions value we answer with.
const deflateResponse = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// deflateTail is the empty stored block that ends a sync-flushed deflate
// stream; RFC 7692 §7.2.1 strips it from the wire.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// deflateEnd is deflateTail followed by a final empty stored block, so the
// decompressor reports io.EOF instead of io.ErrUnexpectedEOF.
var deflateEnd = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// deflateLevel trades CPU for size; a Prepared message is compressed once
// and shared, so the cost is not per connection.
const deflateLevel = 6

var flateWriterPool = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, deflateLevel) // only fails for a bad level
	return w
}}

// inflater is a pooled decompressor with its input source. The source
// implements io.ByteReader so flate does not wrap it in a 4 KiB bufio.Reader.
type inflater struct {
	src pairReader
	fr  io.ReadCloser
}

var inflaterPool = sync.Pool{New: func() any {
	f := &inflater{}
	f.fr = flate.NewReader(&f.src)
	return f
}}

// pairReader reads a, then b.
type pairReader struct{ a, b []byte }

func (r *pairReader) Read(p []byte) (int, error) {
	if len(r.a) == 0 {
		r.a, r.b = r.b, nil
		if len(r.a) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(p, r.a)
	r.a = r.a[n:]
	return n, nil
}

func (r *pairReader) ReadByte() (byte, error) {
	if len(r.a) == 0 {
		r.a, r.b = r.b, nil
		if len(r.a) == 0 {
			return 0, io.EOF
		}
	}
	c := r.a[0]
	r.a = r.a[1:]
	return c, nil
}

var errInflateTooBig = errors.New("decompressed message too big")

// negotiateDeflate reports whether the client's Sec-WebSocket-Extensions
// offers include a permessage-deflate offer we can accept with no context
// takeover on both sides.
func negotiateDeflate(h http.Header) bool {
	for _, line := range h.Values("Sec-WebSocket-Extensions") {
		for offer := range strings.SplitSeq(line, ",") {
			if acceptableDeflateOffer(offer) {
				return true
			}
		}
	}
	return false
}

func acceptableDeflateOffer(offer string) bool {
	parts := strings.Split(offer, ";")
	if !strings.EqualFold(strings.TrimSpace(parts[0]), "permessage-deflate") {
		return false
	}
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		name, val, hasVal := strings.Cut(strings.TrimSpace(p), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if seen[name] {
			return false // RFC 7692 §5: duplicate parameter, decline this offer
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasVal {
				return false
			}
		case "client_max_window_bits":
			// We can inflate any window size; the value is only a hint.
			if hasVal && !validWindowBits(val) {
				return false
			}
		case "server_max_window_bits":
			// compress/flate always uses a 32 KiB window, so only 15 fits.
			if !hasVal || val != "15" {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func validWindowBits(v string) bool {
	switch v {
	case "8", "9", "10", "11", "12", "13", "14", "15":
		return true
	}
	return false
}

// deflateMessage compresses payload as one permessage-deflate message and
// returns the wire bytes (without the trailing 00 00 ff ff).
func deflateMessage(payload []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(payload)/2 + 32)
	w := flateWriterPool.Get().(*flate.Writer)
	w.Reset(&buf)
	// Writes to a bytes.Buffer cannot fail.
	_, _ = w.Write(payload)
	_ = w.Flush()
	flateWriterPool.Put(w)
	out := buf.Bytes()
	return bytes.TrimSuffix(out, deflateTail)
}

// inflateMessage decompresses one permessage-deflate message, refusing to
// produce more than limit bytes (so a small compressed message cannot
// expand without bound).
func inflateMessage(compressed []byte, limit int) ([]byte, error) {
	f := inflaterPool.Get().(*inflater)
	defer func() {
		f.src = pairReader{} // keep no reference to the message
		inflaterPool.Put(f)
	}()
	f.src = pairReader{a: compressed, b: deflateEnd}
	if err := f.fr.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil, fmt.Errorf("ws: reset inflater: %w", err)
	}
	r := f.fr
	out := make([]byte, 0, min(limit+1, max(512, 2*len(compressed))))
	for {
		if len(out) == cap(out) {
			// Grow geometrically but never past limit+1: one byte more
			// than allowed is enough to detect overflow.
			out = slices.Grow(out, min(cap(out), limit+1-len(out)))
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > limit {
			return nil, errInflateTooBig
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ws: inflate: %w", err)
		}
	}
}
