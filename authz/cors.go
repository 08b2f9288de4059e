package authz

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// corsMaxAge is how long a browser may reuse a preflight's answer, in seconds.
const corsMaxAge = "600"

// corsMethods are the methods a listed origin's preflight may be granted.
var corsMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}

// corsOrigin is the request's Origin when the frontend lists it
// (allowed_origins), "" otherwise: only then does an answer carry any
// Access-Control-Allow-* header. Routes with policy none are the
// upstream's own.
func (f *frontend) corsOrigin(req *request) string {
	if req.originCount != 1 || req.policy == PolicyNone || !f.origins.Contains(req.origin) {
		return ""
	}
	return req.origin
}

// preflight answers a listed origin's CORS preflight: 204 granting the
// requested method (one of corsMethods) and, of the requested headers, the
// anti-forgery header and content-type, with credentials. Like every
// preflight it reads no store and sends nothing upstream (T70). A method
// it cannot grant gets the answer of an unlisted origin.
func (f *frontend) preflight(req *request, origin string, plain *authv3.CheckResponse) *authv3.CheckResponse {
	method := strings.TrimSpace(req.acrMethod)
	granted := false
	for _, m := range corsMethods {
		if method == m {
			granted = true
		}
	}
	if !granted {
		return plain
	}
	var headers []string
	for h := range strings.SplitSeq(req.acrHeaders, ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == f.antiforgeryName || h == "content-type" {
			headers = append(headers, h)
		}
	}
	resp := proto.Clone(plain).(*authv3.CheckResponse)
	d := resp.GetDeniedResponse()
	d.Headers = append(d.Headers, corsHeaders(origin)...)
	d.Headers = append(d.Headers,
		setHeader("access-control-allow-methods", method),
		setHeader("access-control-max-age", corsMaxAge))
	if len(headers) > 0 {
		d.Headers = append(d.Headers, setHeader("access-control-allow-headers", strings.Join(headers, ", ")))
	}
	return resp
}

// withCORSDenied is a denial that a listed origin's page may read (its
// JSON error), for the browser to act on.
func withCORSDenied(resp *authv3.CheckResponse, origin string) *authv3.CheckResponse {
	resp = proto.Clone(resp).(*authv3.CheckResponse) // the table's answers are shared
	if d := resp.GetDeniedResponse(); d != nil {
		d.Headers = append(d.Headers, corsHeaders(origin)...)
	}
	return resp
}

// withCORSOK adds the listed origin's Access-Control-Allow-* to the
// upstream's answer (response_headers_to_add). shared is the precomputed
// anonymous pass, which is copied rather than changed.
func withCORSOK(resp, shared *authv3.CheckResponse, origin string) *authv3.CheckResponse {
	if resp == shared {
		resp = proto.Clone(resp).(*authv3.CheckResponse)
	}
	ok := resp.GetOkResponse()
	ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, corsOKHeaders(origin)...)
	return resp
}

// corsHeaders grant origin, with credentials, on envoy-bff's own answers
// (denials and preflights). Vary is set, not appended: Envoy drops an
// appended header from a denied response (seen with Envoy 1.40).
func corsHeaders(origin string) []*corev3.HeaderValueOption {
	return []*corev3.HeaderValueOption{
		replaceHeader("access-control-allow-origin", origin),
		replaceHeader("access-control-allow-credentials", "true"),
		replaceHeader("vary", "Origin"),
	}
}

// corsOKHeaders are corsHeaders for the upstream's answer. Envoy reads the
// deprecated append flag for response headers (see responseCookie), so it
// is set with append_action: Allow-* replace the upstream's own, Vary is
// added to the upstream's.
func corsOKHeaders(origin string) []*corev3.HeaderValueOption {
	return []*corev3.HeaderValueOption{
		replaceHeader("access-control-allow-origin", origin),
		replaceHeader("access-control-allow-credentials", "true"),
		{
			Header:       &corev3.HeaderValue{Key: "vary", Value: "Origin"},
			Append:       wrapperspb.Bool(true), // see responseCookie
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		},
	}
}

// replaceHeader is setHeader for response_headers_to_add, where Envoy may
// read the deprecated append flag (default: append).
func replaceHeader(k, v string) *corev3.HeaderValueOption {
	h := setHeader(k, v)
	//lint:ignore SA1019 Envoy reads the deprecated append flag for response_headers_to_add
	h.Append = wrapperspb.Bool(false)
	return h
}
