package authz

import "strings"

// splitTarget splits Envoy's request target (attributes.request.http.path,
// which still holds the query) into the normalised path and the raw query.
// The fragment, should one arrive, is dropped. Any control character, space
// or non-ASCII byte anywhere in the target makes it invalid.
func splitTarget(target string) (path, query string, err error) {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return "", "", errInvalidPath
		}
	}
	raw := target
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		raw = target[:i]
		if target[i] == '?' {
			query = target[i+1:]
			if j := strings.IndexByte(query, '#'); j >= 0 {
				query = query[:j]
			}
		}
	}
	path, err = normalisePath(raw)
	if err != nil {
		return "", "", err
	}
	return path, query, nil
}

// normalisePath returns the path that policy decisions use, so that every
// spelling of one resource gets one decision (T46, T47):
//
//   - percent-encoded unreserved characters are decoded (%2e → .), every
//     other escape is kept, with upper-case hex;
//   - "." and ".." segments are resolved and repeated slashes merged;
//   - an encoded slash (%2F) or backslash (%5C), a raw backslash, an encoded
//     control character, a malformed escape, or ".." above the root is
//     errInvalidPath: the upstream might read such a path differently.
//
// A path that needs none of this is returned as is, without allocating.
func normalisePath(p string) (string, error) {
	if p == "" || p[0] != '/' {
		return "", errInvalidPath
	}
	clean := true
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c <= ' ' || c >= 0x7f || c == '\\':
			return "", errInvalidPath
		case c == '%':
			clean = false
		case c == '/':
			if i+1 < len(p) && p[i+1] == '/' {
				clean = false
			}
		case c == '.':
			if p[i-1] == '/' && isDotSegmentEnd(p, i) {
				clean = false
			}
		}
	}
	if clean {
		return p, nil
	}

	// Decode: afterwards every '/' in buf is a real separator.
	buf := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			buf = append(buf, c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", errInvalidPath
		}
		b := unhex(p[i+1])<<4 | unhex(p[i+2])
		switch {
		case b == '/' || b == '\\' || b < ' ' || b == 0x7f:
			return "", errInvalidPath
		case isUnreserved(b):
			buf = append(buf, b)
		default:
			const hex = "0123456789ABCDEF"
			buf = append(buf, '%', hex[b>>4], hex[b&0xf])
		}
		i += 2
	}

	// Resolve dot segments (RFC 3986 §5.2.4), merging empty segments.
	parts := strings.Split(string(buf[1:]), "/")
	last := parts[len(parts)-1]
	trailing := last == "" || last == "." || last == ".."
	segs := make([]string, 0, len(parts))
	for _, seg := range parts {
		switch seg {
		case "", ".":
		case "..":
			if len(segs) == 0 {
				return "", errInvalidPath
			}
			segs = segs[:len(segs)-1]
		default:
			segs = append(segs, seg)
		}
	}
	if len(segs) == 0 {
		return "/", nil
	}
	var b strings.Builder
	b.Grow(len(buf) + 1)
	for _, seg := range segs {
		b.WriteByte('/')
		b.WriteString(seg)
	}
	if trailing {
		b.WriteByte('/')
	}
	return b.String(), nil
}

// isDotSegmentEnd reports whether the '.' at p[i] starts a "." or ".." segment.
func isDotSegmentEnd(p string, i int) bool {
	rest := strings.TrimPrefix(p[i+1:], ".")
	return rest == "" || rest[0] == '/'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved reports RFC 3986 unreserved characters, which mean the same
// encoded or not.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
