package session

import (
	"net/http"
	"strings"
)

// ReadID finds the session ID in a Cookie header as Envoy hands it: pairs
// separated by ";", HTTP/2 crumbs already joined with "; ". The name must
// match exactly (case-sensitive, so __host-bff or __Secure-bff never count).
// It returns ErrNoCookie when the cookie is absent, ErrDuplicateCookie when it
// appears more than once (never first- or last-wins), and ErrMalformedID for
// any value that is not a canonical ID. It does not allocate.
func (c CookieConfig) ReadID(cookieHeader string) (ID, error) {
	n, val := c.scan(cookieHeader, 0, "")
	return c.result(n, val)
}

// ReadIDFromRequest is ReadID over every Cookie header line of r, so a
// cookie repeated across lines is a duplicate too.
func (c CookieConfig) ReadIDFromRequest(r *http.Request) (ID, error) {
	n, val := 0, ""
	for _, line := range r.Header["Cookie"] {
		n, val = c.scan(line, n, val)
	}
	return c.result(n, val)
}

func (c CookieConfig) result(n int, val string) (ID, error) {
	switch n {
	case 0:
		return ID{}, ErrNoCookie
	case 1:
		return ParseID(val)
	default:
		return ID{}, ErrDuplicateCookie
	}
}

// scan counts the pairs named c.Name in header, adding to n, and returns the
// value of the last one seen (which only matters when the count is 1).
func (c CookieConfig) scan(header string, n int, val string) (int, string) {
	if c.Name == "" || !strings.Contains(header, c.Name) {
		return n, val
	}
	for rest := header; rest != ""; {
		var pair string
		pair, rest = nextPair(rest)
		name, value, _ := strings.Cut(pair, "=")
		if trimOWS(name) == c.Name {
			n++
			val = trimOWS(value)
		}
	}
	return n, val
}

// Strip removes every pair named c.Name from a Cookie header, so the session
// ID never reaches upstream services, and with them any other pair that
// holds a well-formed session ID the session cookie carries (a nameless
// cookie, another name, or inside a longer value). Other pairs are kept as
// they were, joined by "; "; a header without the cookie comes back
// unchanged.
func (c CookieConfig) Strip(cookieHeader string) string {
	if c.Name == "" || !strings.Contains(cookieHeader, c.Name) {
		return cookieHeader
	}
	_, secret := c.scan(cookieHeader, 0, "")
	if len(secret) != encodedIDLen {
		secret = "" // not an ID: nothing to hide elsewhere, and a short value would match too much
	}
	var b strings.Builder
	removed := false
	for rest := cookieHeader; rest != ""; {
		var pair string
		pair, rest = nextPair(rest)
		name, _, _ := strings.Cut(pair, "=")
		if trimOWS(name) == c.Name || secret != "" && strings.Contains(pair, secret) {
			removed = true
			continue
		}
		if pair = trimOWS(pair); pair == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(pair)
	}
	if !removed {
		return cookieHeader
	}
	return b.String()
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

// nextPair splits the first ";"-separated pair off a Cookie header.
func nextPair(s string) (pair, rest string) {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
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
