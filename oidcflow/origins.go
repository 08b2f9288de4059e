package oidcflow

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Origins is a frontend's allowed_origins: the other origins whose pages
// may call its APIs with credentials (CORS) and open its realtime routes.
// The zero value lists none. It is immutable once parsed, so it is safe
// for concurrent use.
type Origins struct {
	set  map[string]struct{}
	list []string // sorted, for Strings
}

// ParseOrigins validates and canonicalises list (field names it in
// errors, as "field[i]: …"). An origin is scheme http or https, a host and
// an optional port: nothing else, no wildcard. It is stored lower-cased
// with the scheme's default port dropped, which is how browsers send the
// Origin header, so Contains compares strings only.
func ParseOrigins(field string, list []string) (Origins, error) {
	var errs []error
	o := Origins{}
	for i, s := range list {
		c, err := canonicalOrigin(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
			continue
		}
		if _, dup := o.set[c]; dup {
			errs = append(errs, fmt.Errorf("%s[%d]: duplicate origin %q", field, i, c))
			continue
		}
		if o.set == nil {
			o.set = map[string]struct{}{}
		}
		o.set[c] = struct{}{}
		o.list = append(o.list, c)
	}
	if len(errs) > 0 {
		return Origins{}, errors.Join(errs...)
	}
	slices.Sort(o.list)
	return o, nil
}

// canonicalOrigin turns one configured origin into the form a browser's
// Origin header has.
func canonicalOrigin(s string) (string, error) {
	if s == "" || strings.TrimSpace(s) != s || strings.ContainsAny(s, "*?#@\\") {
		return "", fmt.Errorf("must be an origin such as https://app.example.com (no wildcard, userinfo, query or fragment), got %q", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("must be an origin such as https://app.example.com: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", fmt.Errorf("scheme must be http or https, got %q", s)
	case u.Opaque != "" || u.Host == "":
		return "", fmt.Errorf("must name a host, got %q", s)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return "", fmt.Errorf("must be scheme://host[:port] only (no path, not even \"/\"), got %q", s)
	}
	host := strings.ToLower(u.Hostname())
	if !plainHost(host) {
		return "", fmt.Errorf("must name a host (letters, digits, '-', '.', an IDN as punycode, or an IPv6 literal; no %%-escapes), got %q", s)
	}
	port := u.Port()
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", fmt.Errorf("port must be 1-65535, got %q", s)
		}
	}
	return serialiseOrigin(scheme, host, port), nil
}

// serialiseOrigin writes an origin as browsers do (RFC 6454): the default
// port dropped, an IPv6 literal in brackets.
func serialiseOrigin(scheme, host, port string) string {
	if port == defaultPort(scheme) {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "" {
		return scheme + "://" + host
	}
	return scheme + "://" + host + ":" + port
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// Contains reports whether origin, an Origin header's value as the browser
// sent it, is listed. It compares exactly: browsers send origins in the
// canonical form ParseOrigins stores.
func (o Origins) Contains(origin string) bool {
	_, ok := o.set[origin]
	return ok
}

// Len is how many origins are listed.
func (o Origins) Len() int { return len(o.list) }

// Strings lists the origins, sorted.
func (o Origins) Strings() []string { return slices.Clone(o.list) }

// RequestOrigin is the origin a request was addressed to: scheme (http or
// https, as the proxy saw the connection) and the Host or :authority
// header, canonicalised as a browser would serialise it. It is "" when
// the authority is not a plain host[:port].
func RequestOrigin(scheme, authority string) string {
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" || authority == "" || strings.ContainsAny(authority, "/?#@\\ ") {
		return ""
	}
	host, port := authority, ""
	if h, p, err := net.SplitHostPort(authority); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(authority, "[") && strings.HasSuffix(authority, "]") {
		host = authority[1 : len(authority)-1]
	}
	if !plainHost(host) || strings.Trim(port, "0123456789") != "" {
		return ""
	}
	return serialiseOrigin(scheme, strings.ToLower(host), port)
}

// plainHost reports whether host is made only of the bytes a browser puts
// in an Origin's host: a DNS name (IDNs arrive as punycode) or an IP
// literal. Percent-escapes and other bytes are refused rather than
// decoded, so a configured origin and a request's authority can only be
// equal byte for byte.
func plainHost(host string) bool {
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}
