package authz

import "github.com/envoy-bff/envoy-bff/oidcflow"

// streamByOrigin reports whether req is a WebSocket handshake or an
// EventSource request on a route that lets such requests pass on the
// origin rule instead of the anti-forgery header: a browser cannot add
// that header to either.
func streamByOrigin(req *request) bool {
	return req.stream && req.realtime && req.policy.allowsRealtime()
}

// originAllowed is the origin rule, the cross-site WebSocket hijacking
// defence (T76). An allowed origin is the request's own (the scheme Envoy
// saw and the authority) or one of allowed. Origin, when sent, must be
// allowed; Sec-Fetch-Site, when sent, must be same-origin, or same-site
// for a listed Origin; and at least one of the two must be sent and pass.
// Browsers send Origin on every WebSocket handshake, and Sec-Fetch-Site on
// every EventSource request (a same-origin one carries no Origin).
func originAllowed(req *request, allowed oidcflow.Origins) bool {
	if req.originCount > 1 || req.secFetchSiteCount > 1 {
		return false // a browser sends each once; Envoy merges duplicates
	}
	listed := false
	if req.originCount == 1 {
		listed = allowed.Contains(req.origin)
		if !listed && req.origin != oidcflow.RequestOrigin(req.scheme, req.host) {
			return false
		}
	}
	if req.secFetchSiteCount == 1 {
		switch req.secFetchSite {
		case "same-origin":
		case "same-site":
			if !listed {
				return false
			}
		default: // cross-site, none, or anything else
			return false
		}
	}
	return req.originCount == 1 || req.secFetchSiteCount == 1
}
