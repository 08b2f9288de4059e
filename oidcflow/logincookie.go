package oidcflow

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
)

// loginCookieMaxAge matches the 10-minute life of a pending login.
const loginCookieMaxAge = 600

// loginCookieAttrs are the login-transaction cookie's attributes. SameSite
// is Lax whatever the session cookie's setting: the provider-to-callback hop
// is a cross-site top-level navigation, which Strict would strip (T10).
const loginCookieAttrs = "; Path=/; Secure; HttpOnly; SameSite=Lax"

// setLoginCookie is the Set-Cookie value that gives the browser its
// login-transaction secret.
func setLoginCookie(value string) string {
	return loginCookieName + "=" + value + loginCookieAttrs + "; Max-Age=" + strconv.Itoa(loginCookieMaxAge)
}

// clearLoginCookie is the Set-Cookie value that drops it.
func clearLoginCookie() string {
	return loginCookieName + "=" + loginCookieAttrs + "; Max-Age=0"
}

// browserBinding is what the store keeps of the login cookie: its SHA-256.
func browserBinding(value string) []byte {
	sum := sha256.Sum256([]byte(value))
	return sum[:]
}

// boundToBrowser reports whether r carries exactly one login cookie whose
// hash is binding, compared in constant time.
func boundToBrowser(r *http.Request, binding []byte) bool {
	cs := r.CookiesNamed(loginCookieName)
	if len(cs) != 1 || len(binding) != sha256.Size {
		return false
	}
	return subtle.ConstantTimeCompare(browserBinding(cs[0].Value), binding) == 1
}
