package authz

import (
	"cmp"
	"strings"
	"time"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/envoy-bff/envoy-bff/oidcflow"
)

// Context extension keys a route may set in Envoy
// (typed_per_filter_config → check_settings.context_extensions).
const (
	// extPolicy names the route's policy; it beats every path rule.
	extPolicy = "bff.policy"
	// extRedirect, "true", lets unauthenticated navigations on the route get a 302 to login.
	extRedirect = "bff.redirect"
	// extClientToken names the client token client and user_or_client send (default "default").
	extClientToken = "bff.client_token"
	// extFrontend names the route's frontend; it beats host and path selection.
	extFrontend = "bff.frontend"
	// extToken names the route's token profile.
	extToken = "bff.token"
	// extRealtime, "true", lets WebSocket and EventSource requests on the
	// route pass on the origin rule instead of the anti-forgery header.
	extRealtime = "bff.realtime"
)

// defaultClientToken is the client token of a route that names none.
const defaultClientToken = oidcflow.DefaultClientToken

// maxRequestIDLen bounds the client-supplied x-request-id that reaches the log.
const maxRequestIDLen = 128

// request is everything a decision needs from a CheckRequest, validated.
// It holds no proto types, so decide is testable with plain values.
type request struct {
	id          string // x-request-id, for logs only
	method      string
	host        string // :authority as Envoy saw it, maybe with a port
	frontend    string // the frontend the route names, "" to select one
	path        string // normalised, without query or fragment
	query       string // raw, without '?'
	policy      Policy
	routed      bool         // the route named the policy (context_extensions)
	clientToken string       // the client token client and user_or_client send
	require     *requirement // what the route asks of the session; nil: nothing
	profile     string       // the token profile the route sends; "": the session's token
	redirect    bool         // the route allows a 302 to login
	navigation  bool         // a browser's top-level GET
	preflight   bool         // a CORS preflight: OPTIONS with access-control-request-method
	realtime    bool         // the route lets WebSocket and EventSource pass on the origin rule
	// stream is a GET that opens a WebSocket (upgrade: websocket) or an
	// EventSource (accept: text/event-stream): a browser cannot add the
	// anti-forgery header to either.
	stream bool
	// scheme is the scheme Envoy saw; with host it makes the request's own origin.
	scheme string
	// origin is the Origin header (originCount its entries), secFetchSite
	// the Sec-Fetch-Site header (secFetchSiteCount its entries).
	origin            string
	originCount       int
	secFetchSite      string
	secFetchSiteCount int
	// acrMethod and acrHeaders are a preflight's
	// Access-Control-Request-Method and -Headers.
	acrMethod, acrHeaders string
	// antiforgery is the anti-forgery header's value; antiforgeryCount counts
	// separate header entries (more than one is always wrong).
	antiforgery      string
	antiforgeryCount int
	cookie           string // the whole Cookie header, "" if none
	// start is when the Check began (check sets it): check_timeout counts
	// from here (Server.deadline).
	start time.Time
}

// parser turns CheckRequests into requests. It is built once by
// NewFrontendServer; a frontend's path rules give the policy afterwards
// (frontend.route) unless the route names one.
type parser struct {
	antiforgeryName string // lower case, as Envoy hands header names over
	// requires compiles the bff.require.* extensions once per distinct set.
	requires *extRequireCache
}

// parse is pure. It never trusts x-forwarded-uri, x-envoy-original-path or
// x-forwarded-host (T46): only the request target Envoy saw decides.
func (p *parser) parse(in *authv3.CheckRequest) (request, error) {
	attrs := in.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return request{}, errInvalidRequest
	}
	var r request
	r.method = h.GetMethod()
	r.id = h.GetId()
	r.host = h.GetHost()
	r.scheme = h.GetScheme()

	var accept, fetchMode string
	var hasACRM, websocket bool
	pick := func(k, v string) {
		switch k {
		case "cookie":
			if r.cookie == "" {
				r.cookie = v
			} else { // raw header entries: join as HTTP/2 crumbs are joined
				r.cookie += "; " + v
			}
		case "x-request-id":
			r.id = v[:min(len(v), maxRequestIDLen)]
		case "accept":
			accept = v
		case "sec-fetch-mode":
			fetchMode = v
		case "access-control-request-method":
			hasACRM = true
			r.acrMethod = v
		case "access-control-request-headers":
			r.acrHeaders = v
		case "origin":
			r.origin = v
			r.originCount++
		case "sec-fetch-site":
			r.secFetchSite = v
			r.secFetchSiteCount++
		case "upgrade":
			websocket = containsFold(v, "websocket")
		case p.antiforgeryName:
			r.antiforgery = v
			r.antiforgeryCount++
		}
	}
	for k, v := range h.GetHeaders() {
		if !validHeader(k) || !validHeader(v) {
			return request{id: r.id, method: r.method}, errInvalidRequest
		}
		pick(k, v)
	}
	// With encode_raw_headers Envoy sends every entry separately and unmerged,
	// with raw bytes: the only place non-UTF-8 is still visible (T50).
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		k := hv.GetKey()
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if !validHeader(k) || !validHeader(v) {
			return request{id: r.id, method: r.method}, errInvalidRequest
		}
		pick(strings.ToLower(k), v)
	}

	path, query, err := splitTarget(h.GetPath())
	if err != nil {
		return request{id: r.id, method: r.method}, err
	}
	r.path, r.query = path, query
	r.navigation = r.method == "GET" && (fetchMode == "navigate" || strings.Contains(accept, "text/html"))
	r.preflight = r.method == "OPTIONS" && hasACRM
	r.stream = r.method == "GET" && (websocket || containsFold(accept, "text/event-stream"))

	ext := attrs.GetContextExtensions()
	r.frontend = ext[extFrontend]
	if name, ok := ext[extPolicy]; ok {
		if r.policy, err = parsePolicy(name); err != nil {
			return request{id: r.id, method: r.method, path: r.path}, err
		}
		r.routed = true
		r.redirect = ext[extRedirect] == "true"
		r.clientToken = cmp.Or(ext[extClientToken], defaultClientToken)
		r.profile = ext[extToken]
		r.realtime = ext[extRealtime] == "true"
		if len(ext) > 1 { // only bff.policy: nothing else to read
			if r.require, err = p.requires.get(ext); err != nil {
				return request{id: r.id, method: r.method, path: r.path}, err
			}
		}
	}
	return r, nil
}

// validHeader rejects NUL, CR, LF and every other control character but
// HTAB, and invalid UTF-8 (T50).
func validHeader(s string) bool {
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	return ascii || utf8.ValidString(s)
}

// containsFold reports whether s contains the lower-case ASCII word sub in
// any case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
