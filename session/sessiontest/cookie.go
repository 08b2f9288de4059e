package sessiontest

import "strings"

// ows is the whitespace any HTTP parser might skip around a cookie pair.
const ows = " \t\r\n\v\f"

// CookieNamed reports whether a Cookie header holds a pair that some
// lenient parser could take for the cookie name: the name delimited on both
// sides by the header's ends, ";", ",", whitespace (or "=" after it). It is
// the reference the fuzz targets hold session.CookieConfig and authz to,
// written without them.
func CookieNamed(header, name string) bool {
	return CountNamed(header, name) > 0
}

// CountNamed is how many pairs of header CookieNamed would find.
func CountNamed(header, name string) int {
	n := 0
	for _, part := range strings.FieldsFunc(header, func(r rune) bool {
		return r == ';' || r == ',' || strings.ContainsRune(ows, r)
	}) {
		if part == name || strings.HasPrefix(part, name+"=") {
			n++
		}
	}
	return n
}

// CookiePairs splits a Cookie header where ";" or "," separate pairs.
func CookiePairs(header string) []string {
	return strings.FieldsFunc(header, func(r rune) bool { return r == ';' || r == ',' })
}
