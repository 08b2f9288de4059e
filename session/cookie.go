package session

import (
	"net/http"
	"strings"
)

// ReadID finds the session ID in a Cookie header as Envoy hands it: pairs
// separated by ";", HTTP/2 crumbs joined with "; ", repeated Cookie headers
// joined with ",". Every occurrence of the name that any lenient parser
// could take for the cookie counts (see scan), whatever separates it from
// its neighbours. The name must match exactly (case-sensitive, so
// __host-bff or __Secure-bff never count). It returns ErrNoCookie when the
// cookie is absent, ErrDuplicateCookie when it appears more than once
// (never first- or last-wins), and ErrMalformedID for any value that is
// not a canonical ID. It does not allocate.
func (c CookieConfig) ReadID(cookieHeader string) (ID, error) {
	n, val := c.scan(cookieHeader, 0, "")
	return c.result(n, val)
}

// ReadIDFromRequest is ReadID over every Cookie header line of r, so a
// cookie repeated across lines is a duplicate too.
func (c CookieConfig) ReadIDFromRequest(r *http.Request) (ID, error) {
	val, err := c.ValueFromRequest(r)
	if err != nil {
		return ID{}, err
	}
	return ParseID(val)
}

// ValueFromRequest is the raw value of the cookie named c.Name over every
// Cookie header line of r, read by the same rules as ReadID: ErrNoCookie
// when absent, ErrDuplicateCookie when named more than once.
func (c CookieConfig) ValueFromRequest(r *http.Request) (string, error) {
	n, val := 0, ""
	for _, line := range r.Header["Cookie"] {
		n, val = c.scan(line, n, val)
	}
	return only(n, val)
}

func (c CookieConfig) result(n int, val string) (ID, error) {
	val, err := only(n, val)
	if err != nil {
		return ID{}, err
	}
	return ParseID(val)
}

// only is the value of a cookie scan counted n times: exactly one, or none.
func only(n int, val string) (string, error) {
	switch n {
	case 0:
		return "", ErrNoCookie
	case 1:
		return val, nil
	default:
		return "", ErrDuplicateCookie
	}
}

// scan counts the occurrences of c.Name in header, adding to n, and returns
// the value of the last one seen (which only matters when the count is 1).
//
// An occurrence is the name with a delimiter on both sides: before it the
// start of the header, ";", "," (Envoy joins repeated Cookie headers with
// it) or whitespace (a parser that splits on it sees a new pair); after it
// "=", ";", ",", whitespace or the end (a bare name is a malformed cookie,
// and still a cookie). Its value runs from "=" to the next ";" or ",",
// trimmed. So "x=__Host-bff=1" holds none (the name is inside a value), and
// "__Host-bff=A;,__Host-bff=B" holds two.
func (c CookieConfig) scan(header string, n int, val string) (int, string) {
	if c.Name == "" {
		return n, val
	}
	for i := 0; ; n++ {
		v, next, ok := nextNamed(header, c.Name, i)
		if !ok {
			return n, val
		}
		val, i = v, next
	}
}

// nextNamed finds the first occurrence of name at or after header[from:]
// by scan's rules and returns its value ("" for a bare name) and where to
// look for the next one.
func nextNamed(header, name string, from int) (value string, next int, ok bool) {
	for i := from; i <= len(header)-len(name); {
		j := strings.Index(header[i:], name)
		if j < 0 {
			break
		}
		start, end := i+j, i+j+len(name)
		i = end
		if start > 0 && !isPairStart(header[start-1]) || end < len(header) && !isNameEnd(header[end]) {
			continue
		}
		rest := trimLeftOWS(header[end:])
		if rest == "" || rest[0] != '=' {
			return "", i, true // bare name: malformed
		}
		v := rest[1:]
		if k := indexSep(v); k >= 0 {
			v = v[:k]
		}
		return trimOWS(v), i, true
	}
	return "", len(header), false
}

// isPairStart reports whether c may end the text before a cookie name.
func isPairStart(c byte) bool { return c == ';' || c == ',' || isOWS(c) }

// isNameEnd reports whether c may follow a complete cookie name.
func isNameEnd(c byte) bool { return c == '=' || c == ';' || c == ',' || isOWS(c) }

// maxSecrets bounds how many session values Strip hides elsewhere in the
// header: more occurrences are denied as duplicates anyway.
const maxSecrets = 4

// Strip removes from a Cookie header every pair that names c.Name (by
// scan's rules, so ";", "," and whitespace all separate), so no session ID
// reaches upstream services, and with them any other pair that holds a
// well-formed session ID the session cookie carries (a nameless cookie,
// another name, or inside a longer value). Pairs are what ";" and ","
// separate; the others are kept as they were, trimmed, each after the
// separator it followed (";" as "; "). A header without the cookie comes
// back unchanged.
func (c CookieConfig) Strip(cookieHeader string) string {
	if c.Name == "" || !strings.Contains(cookieHeader, c.Name) {
		return cookieHeader
	}
	var secrets [maxSecrets]string
	nsecrets := 0
	for i := 0; nsecrets < maxSecrets; {
		v, next, ok := nextNamed(cookieHeader, c.Name, i)
		if !ok {
			break
		}
		i = next
		// A value that is not ID-shaped is no ID to hide elsewhere, and a
		// short one would match too much.
		if len(v) == encodedIDLen {
			secrets[nsecrets] = v
			nsecrets++
		}
	}
	// The result is a slice of cookieHeader (lo:hi) for as long as the
	// kept pairs stand there exactly as they would be written: the common
	// case of a session cookie first or last costs no allocation. b takes
	// over at the first difference.
	var b strings.Builder
	lo, hi, inPlace, empty := 0, 0, true, true
	removed := false
	sep := byte(0) // the separator before the pair in hand
	for rest := cookieHeader; rest != ""; {
		start := len(cookieHeader) - len(rest)
		var pair string
		var next byte
		pair, next, rest = nextPair(rest)
		before := sep
		sep = next
		if n, _ := c.scan(pair, 0, ""); n > 0 || holdsAny(pair, secrets[:nsecrets]) {
			removed = true
			continue
		}
		kept := trimOWS(pair)
		if kept == "" {
			continue
		}
		joint := "; "
		if before == ',' {
			joint = ","
		}
		from := start + len(pair) - len(trimLeftOWS(pair))
		switch {
		case inPlace && empty:
			lo, hi = from, from+len(kept)
		case inPlace && cookieHeader[hi:from] == joint:
			hi = from + len(kept)
		case inPlace:
			inPlace = false
			b.Grow(len(cookieHeader))
			b.WriteString(cookieHeader[lo:hi])
			fallthrough
		default:
			if !empty {
				b.WriteString(joint)
			}
			b.WriteString(kept)
		}
		empty = false
	}
	switch {
	case !removed:
		return cookieHeader
	case inPlace:
		return cookieHeader[lo:hi]
	}
	return b.String()
}

func holdsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// SetCookie is the Set-Cookie value that hands id to the browser: a
// browser-session cookie (no Max-Age), Secure, HttpOnly, Path=/, no Domain,
// so the __Host- prefix holds.
func (c CookieConfig) SetCookie(id ID) string {
	return c.Name + "=" + id.String() + c.attributes()
}

// ClearCookie is the Set-Cookie value that makes the browser drop the
// session cookie: the same attributes, an empty value and Max-Age=0.
func (c CookieConfig) ClearCookie() string {
	return c.Name + "=" + c.attributes() + "; Max-Age=0"
}

func (c CookieConfig) attributes() string {
	if c.SameSite == "strict" {
		return "; Path=/; Secure; HttpOnly; SameSite=Strict"
	}
	return "; Path=/; Secure; HttpOnly; SameSite=Lax"
}

// nextPair splits the first pair off a Cookie header at ";" or "," and
// returns the separator it met (0 at the end).
func nextPair(s string) (pair string, sep byte, rest string) {
	if i := indexSep(s); i >= 0 {
		return s[:i], s[i], s[i+1:]
	}
	return s, 0, ""
}

// indexSep is strings.IndexAny(s, ";,") without building a byte set on
// every call: every Check scans the Cookie header with it, pair by pair.
func indexSep(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ';' || c == ',' {
			return i
		}
	}
	return -1
}

// trimLeftOWS trims leading whitespace as trimOWS does.
func trimLeftOWS(s string) string {
	for s != "" && isOWS(s[0]) {
		s = s[1:]
	}
	return s
}

// trimOWS trims the whitespace any HTTP parser might skip around a cookie
// name or value; trimming generously means no parser finds a session cookie
// that ReadID and Strip missed.
func trimOWS(s string) string {
	for s != "" && isOWS(s[0]) {
		s = s[1:]
	}
	for s != "" && isOWS(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isOWS(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}
