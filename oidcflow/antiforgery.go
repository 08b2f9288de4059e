package oidcflow

import (
	"crypto/subtle"
	"net/http"
)

// AntiforgeryConfig is the `antiforgery:` section: the header a browser must
// send on API calls and on /bff/user. A cross-site form or a simple request
// cannot set a custom header, so its presence proves a same-origin fetch.
type AntiforgeryConfig struct {
	// Header is the header's name (default X-CSRF).
	Header string `yaml:"header"`
	// Value is the one exact value that passes (default "1").
	Value string `yaml:"value"`
}

// Valid reports whether one header value, as a proxy hands it over after
// merging duplicates with ",", is exactly the configured value.
func (c AntiforgeryConfig) Valid(v string) bool {
	return len(v) == len(c.Value) && subtle.ConstantTimeCompare([]byte(v), []byte(c.Value)) == 1
}

// ValidHTTP reports whether h carries the header exactly once with exactly the configured value.
func (c AntiforgeryConfig) ValidHTTP(h http.Header) bool {
	vs := h.Values(c.Header)
	return len(vs) == 1 && c.Valid(vs[0])
}
