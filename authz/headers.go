package authz

import (
	"slices"
	"strings"
)

// RequestHeaders lists, lower case and sorted, every request header Check
// reads when antiforgery are the frontends' anti-forgery header names: what
// Envoy's ext_authz filter must send (allowed_headers), and all it needs
// to. Envoy sends the method, path, host and scheme on their own.
//
// Besides the anti-forgery header: the session cookie, the request ID,
// what tells a navigation, a stream or a preflight apart, the origin rule's
// inputs, and W3C trace context. TestRequestHeadersAreWhatCheckReads keeps
// this list and the parser in step.
func RequestHeaders(antiforgery ...string) []string {
	out := []string{
		"accept",
		"access-control-request-headers",
		"access-control-request-method",
		"cookie",
		"origin",
		"sec-fetch-mode",
		"sec-fetch-site",
		"traceparent",
		"tracestate",
		"upgrade",
		"x-request-id",
	}
	for _, h := range antiforgery {
		out = append(out, strings.ToLower(h))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
