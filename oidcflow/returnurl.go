package oidcflow

import (
	"fmt"
	"net/url"
	"strings"
)

// Bounds of ValidateReturnURL.
const (
	// maxReturnURLLen bounds a returnUrl; longer ones are never stored.
	maxReturnURLLen = 2048
	// maxDecodeRounds is how many layers of percent-encoding are unwrapped
	// and checked; a value still changing after that is refused.
	maxDecodeRounds = 4
)

// ValidateReturnURL accepts only a local path, so a login can never send the
// browser to another origin (open redirect). The principle, rather than a
// list of bad strings: the value must be a path-only relative reference —
// no scheme, no authority, a path that starts with exactly one "/" — and
// stay one after every layer of percent-decoding (a server or browser that
// decodes once more must not find "//", "\", or control characters either).
// The raw value must be printable ASCII without spaces or backslashes:
// non-ASCII must arrive percent-encoded, so no look-alike is reinterpreted.
// The query is kept, the fragment dropped. An empty value means "/".
func ValidateReturnURL(raw string) (string, error) {
	if raw == "" {
		return "/", nil
	}
	if len(raw) > maxReturnURLLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidReturnURL, maxReturnURLLen)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return "", fmt.Errorf("%w: byte 0x%02x at %d (only printable ASCII without spaces or backslashes)", ErrInvalidReturnURL, c, i)
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: does not parse", ErrInvalidReturnURL)
	}
	if u.Scheme != "" || u.Opaque != "" || u.User != nil || u.Host != "" {
		return "", fmt.Errorf("%w: has a scheme or authority", ErrInvalidReturnURL)
	}
	rest, _, _ := strings.Cut(raw, "#") // the fragment stays in the browser
	path, query, hasQuery := strings.Cut(rest, "?")
	if err := checkDecoded(path, true); err != nil {
		return "", err
	}
	if err := checkDecoded(query, false); err != nil {
		return "", err
	}
	if hasQuery && query != "" {
		return path + "?" + query, nil
	}
	return path, nil
}

// ValidateReturnURLFor is ValidateReturnURL widened to one more form: an
// absolute URL on one of origins (the frontend's authz.allowed_origins), so
// that an SPA served from another origin gets back to itself after a
// login. The origin must be spelled exactly as listed (lower case, no
// default port: what a browser sends as Origin) and be followed by "/" or
// nothing; the rest must pass ValidateReturnURL as a local path. No list,
// no absolute URL: the open-redirect rule stays as strict as before.
func ValidateReturnURLFor(raw string, origins Origins) (string, error) {
	if origins.Len() == 0 || !(strings.HasPrefix(raw, "https://") || strings.HasPrefix(raw, "http://")) {
		return ValidateReturnURL(raw)
	}
	rest := raw[strings.Index(raw, "://")+3:]
	end := strings.IndexByte(rest, '/')
	if end < 0 {
		end = len(rest)
	}
	origin := raw[:len(raw)-len(rest)+end]
	if !origins.Contains(origin) {
		return "", fmt.Errorf("%w: an absolute URL whose origin is not one of the allowed origins", ErrInvalidReturnURL)
	}
	path := raw[len(origin):]
	if path == "" {
		path = "/"
	}
	local, err := ValidateReturnURL(path)
	if err != nil {
		return "", err
	}
	return origin + local, nil
}

// checkDecoded checks s and every percent-decoded layer of it: no control
// characters or backslashes, and for a path, exactly one leading "/" and no
// "//" anywhere.
func checkDecoded(s string, isPath bool) error {
	for range maxDecodeRounds {
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }) {
			return fmt.Errorf("%w: control character or backslash after decoding", ErrInvalidReturnURL)
		}
		if isPath && (!strings.HasPrefix(s, "/") || strings.Contains(s, "//")) {
			return fmt.Errorf("%w: path must start with exactly one / and hold no //", ErrInvalidReturnURL)
		}
		next, err := url.PathUnescape(s)
		if err != nil {
			return fmt.Errorf("%w: bad percent-encoding", ErrInvalidReturnURL)
		}
		if next == s {
			return nil
		}
		s = next
	}
	return fmt.Errorf("%w: more than %d layers of percent-encoding", ErrInvalidReturnURL, maxDecodeRounds)
}
