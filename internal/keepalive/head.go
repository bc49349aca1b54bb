package keepalive

import "bytes"

// parseHead parses a request head b (ending in an empty line) into r. It
// accepts only what it fully understands: "GET target HTTP/1.1", CRLF line
// ends, one Host, well-formed header names and values, no body and nothing
// that changes the connection (Connection: close or upgrade, Upgrade,
// Expect), at most one Authorization. false leaves the request to net/http,
// which applies its own rules (and its 400s) to whatever else a client sends.
func parseHead(b []byte, r *Request) bool {
	line, rest, ok := bytes.Cut(b, crlf)
	if !ok || len(line) <= len("GET  HTTP/1.1") || !bytes.HasPrefix(line, []byte("GET ")) || !bytes.HasSuffix(line, []byte(" HTTP/1.1")) {
		return false
	}
	target := line[len("GET ") : len(line)-len(" HTTP/1.1")]
	if len(target) == 0 || target[0] != '/' {
		return false
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	path, query, _ := bytes.Cut(target, []byte{'?'})
	if !validEscapes(path) {
		return false // net/http refuses a path with a bad %-escape
	}
	hosts, auths, auth := 0, 0, []byte(nil)
	for {
		line, rest, ok = bytes.Cut(rest, crlf)
		if !ok {
			return false // b did not end in an empty line
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || !validName(name) {
			return false // also a folded line (leading space) or "Name :"
		}
		value = trimOWS(value)
		if !validValue(value) {
			return false
		}
		switch {
		case equalFold(name, "host"):
			hosts++
			if !validHost(value) {
				return false
			}
		case equalFold(name, "authorization"):
			auths++
			auth = value
		case equalFold(name, "connection"):
			if hasToken(value, "close") || hasToken(value, "upgrade") {
				return false
			}
		case equalFold(name, "content-length"), equalFold(name, "transfer-encoding"),
			equalFold(name, "upgrade"), equalFold(name, "expect"), equalFold(name, "trailer"):
			return false
		}
	}
	if len(rest) != 0 || hosts != 1 || auths > 1 {
		return false
	}
	r.Path, r.Query, r.Authorization = string(path), string(query), string(auth)
	return true
}

var crlf = []byte("\r\n")

// validEscapes reports whether every '%' in p starts a %XX escape.
func validEscapes(p []byte) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validName reports whether name is an HTTP token (RFC 9110 tchar).
func validName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !isTchar(c) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validValue refuses control bytes (tab aside) in a field value.
func validValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts a conservative subset of what a Host may hold.
func validHost(v []byte) bool {
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == ':' || c == '[' || c == ']' || c == '_':
		default:
			return false
		}
	}
	return true
}

// trimOWS drops optional whitespace (spaces and tabs) around a value.
func trimOWS(v []byte) []byte { return bytes.Trim(v, " \t") }

// equalFold compares an ASCII name with lower-case s, ignoring case.
func equalFold(name []byte, s string) bool {
	if len(name) != len(s) {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds token (any case).
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte{','})
		if equalFold(trimOWS(item), token) {
			return true
		}
	}
	return false
}
