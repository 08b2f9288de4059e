package oidcflow

import (
	"net/http"
	"strconv"

	"github.com/envoy-bff/envoy-bff/session"
)

// loginCookieMaxAge matches the 10-minute life of a pending login.
const loginCookieMaxAge = 600

// loginCookieAttrs are the login-transaction cookie's attributes. SameSite
// is Lax whatever the session cookie's setting: the provider-to-callback hop
// is a cross-site top-level navigation, which Strict would strip (T10).
const loginCookieAttrs = "; Path=/; Secure; HttpOnly; SameSite=Lax"

// setLoginCookie is the Set-Cookie value that gives the browser its
// login-transaction secret.
func (h *Handler) setLoginCookie(value string) string {
	return h.loginCookie + "=" + value + loginCookieAttrs + "; Max-Age=" + strconv.Itoa(loginCookieMaxAge)
}

// clearLoginCookie is the Set-Cookie value that drops it.
func (h *Handler) clearLoginCookie() string {
	return h.loginCookie + "=" + loginCookieAttrs + "; Max-Age=0"
}

// loginSecret is the login-transaction secret r carries, read by the
// session cookie's rules (every separator counts): the value of its one
// login cookie, or "" when it has none or more than one, which no pending
// login is stored under.
func (h *Handler) loginSecret(r *http.Request) string {
	v, err := session.CookieConfig{Name: h.loginCookie}.ValueFromRequest(r)
	if err != nil {
		return ""
	}
	return v
}
