package authz

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/envoy-bff/envoy-bff/session"
)

// retryAfterSeconds is what a 503 asks the client to wait.
const retryAfterSeconds = 1

// maxReturnURL bounds the returnUrl of a login redirect; a longer one loses
// its query, then falls back to "/".
const maxReturnURL = 2048

// responses holds every answer that does not depend on the request, built
// once by NewServer and only read afterwards: Envoy gets the same messages
// again and again (proto messages are safe for concurrent reads).
type responses struct {
	table    []denial
	answers  []*authv3.CheckResponse // parallel to table
	fallback denial
	internal *authv3.CheckResponse

	okStatus *rpcstatus.Status
	// anonymous passes: the client's authorization and identity headers go.
	anonRemove       []string
	anonRemoveCookie []string // the same plus "cookie"
	anonOK           *authv3.CheckResponse
	cookieRemove     []string // just "cookie"
	clearCookie      string   // the Set-Cookie that deletes the session cookie
}

func newResponses(identity []identityHeader, clearCookie string) responses {
	r := responses{
		table:       denials(),
		fallback:    internalDenial(),
		okStatus:    &rpcstatus.Status{Code: int32(codes.OK)},
		clearCookie: clearCookie,
	}
	for _, d := range r.table {
		r.answers = append(r.answers, r.buildDenied(d))
	}
	r.internal = r.buildDenied(r.fallback)

	r.anonRemove = []string{"authorization"}
	for _, h := range identity {
		r.anonRemove = append(r.anonRemove, h.header)
	}
	r.anonRemoveCookie = append(slices.Clone(r.anonRemove), "cookie")
	slices.Sort(r.anonRemove)
	slices.Sort(r.anonRemoveCookie)
	r.cookieRemove = []string{"cookie"}
	r.anonOK = r.okResponse(nil, r.anonRemove, false)
	return r
}

// denied returns the table row for err and its precomputed answer.
func (r *responses) denied(err error) (denial, *authv3.CheckResponse) {
	for i, d := range r.table {
		if errors.Is(err, d.err) {
			return d, r.answers[i]
		}
	}
	return r.fallback, r.internal
}

// errorBody is the JSON every denial carries. Its text is fixed per code:
// nothing from the request, no token, no cookie value.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (r *responses) buildDenied(d denial) *authv3.CheckResponse {
	headers := []*corev3.HeaderValueOption{setHeader("cache-control", "no-store")}
	var body []byte
	if !d.bodyless {
		var err error
		if body, err = json.Marshal(errorBody{Error: d.code, Description: d.description}); err != nil {
			panic(err) // two plain strings always marshal
		}
		headers = append(headers, setHeader("content-type", "application/json"))
	}
	if d.retryAfter {
		headers = append(headers, setHeader("retry-after", strconv.Itoa(retryAfterSeconds)))
	}
	if d.clearCookie {
		headers = append(headers, setHeader("set-cookie", r.clearCookie))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(d.grpcCode), Message: d.code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.status)},
			Headers: headers,
			Body:    string(body),
		}},
	}
}

// redirect sends a browser navigation to log in, with the normalised path and
// query as returnUrl. Built per request: it carries the path.
func (r *responses) redirect(loginPath string, req *request, clearCookie bool) *authv3.CheckResponse {
	ret := req.path
	if req.query != "" && len(req.path)+1+len(req.query) <= maxReturnURL {
		ret += "?" + req.query
	}
	if len(ret) > maxReturnURL {
		ret = "/"
	}
	headers := []*corev3.HeaderValueOption{
		setHeader("cache-control", "no-store"),
		setHeader("location", loginURL(loginPath)+"returnUrl="+url.QueryEscape(ret)),
	}
	if clearCookie {
		headers = append(headers, setHeader("set-cookie", r.clearCookie))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated), Message: "login_required"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Found},
			Headers: headers,
		}},
	}
}

// stepUpBody is a step_up_required denial's JSON: the fixed code and text,
// and the login URL that asks the provider for what the route needs.
type stepUpBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	LoginURL    string `json:"loginUrl"`
}

// stepUp renders 401 step_up_required with RFC 9470's WWW-Authenticate
// challenge and a loginUrl the SPA sends the browser to (adding its own
// returnUrl). The session cookie stays: the session is valid, only weaker
// than this route wants.
func (r *responses) stepUp(loginPath string, d denial, up *stepUpError) *authv3.CheckResponse {
	body, err := json.Marshal(stepUpBody{Error: d.code, Description: d.description, LoginURL: loginPath + "?" + up.stepUpQuery()})
	if err != nil {
		panic(err) // plain strings always marshal
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(d.grpcCode), Message: d.code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(d.status)},
			Headers: []*corev3.HeaderValueOption{
				setHeader("cache-control", "no-store"),
				setHeader("content-type", "application/json"),
				setHeader("www-authenticate", up.wwwAuthenticate()),
			},
			Body: string(body),
		}},
	}
}

// stepUpRedirect sends a browser navigation straight to the step-up login,
// with the page as returnUrl.
func (r *responses) stepUpRedirect(loginPath string, req *request, up *stepUpError) *authv3.CheckResponse {
	resp := r.redirect(loginPath+"?"+up.stepUpQuery()+"&", req, false)
	resp.Status.Message = "step_up_required"
	return resp
}

// loginURL is loginPath ready for one more query parameter: a path ending
// in "?" or "&" (stepUpRedirect's) is taken as it is.
func loginURL(loginPath string) string {
	if strings.HasSuffix(loginPath, "&") {
		return loginPath
	}
	return loginPath + "?"
}

// okAlloc lets one allocation hold a whole OK response and its first few
// header mutations: this is the hot path.
type okAlloc struct {
	resp    authv3.CheckResponse
	wrap    authv3.CheckResponse_OkResponse
	ok      authv3.OkHttpResponse
	headers [3]*corev3.HeaderValueOption
	opts    [3]corev3.HeaderValueOption
	values  [3]corev3.HeaderValue
}

// ok renders a pass. Upstream gets exactly one authorization header, ours,
// or none at all (T43, T44); the cookie header without the session cookie,
// or no cookie header (T49), nor any other frontend's cookie the browser
// could have sent along (T72); identity headers from the session's claims
// only (T45). Mutations are sorted so output is stable.
func (r *responses) ok(req *request, d decision, strip []session.CookieConfig, identity []identityHeader) *authv3.CheckResponse {
	stripped, cookieChanged := req.cookie, false
	if req.cookie != "" {
		for _, c := range strip {
			stripped = c.Strip(stripped)
		}
		cookieChanged = stripped != req.cookie
	}

	if d.token == "" {
		if !cookieChanged && !d.clearCookie {
			return r.anonOK
		}
		a := new(okAlloc)
		headers := a.headers[:0]
		remove := r.anonRemove
		if cookieChanged {
			if stripped == "" {
				remove = r.anonRemoveCookie
			} else {
				headers = append(headers, a.set(0, "cookie", stripped))
			}
		}
		return r.fill(a, headers, remove, d.clearCookie)
	}

	a := new(okAlloc)
	var headers []*corev3.HeaderValueOption
	if d.dpop != "" {
		// RFC 9449 §7.1: the DPoP scheme and the request's own proof.
		headers = append(a.headers[:0], a.set(0, "authorization", "DPoP "+d.token), a.set(2, "dpop", d.dpop))
	} else {
		headers = append(a.headers[:0], a.set(0, "authorization", "Bearer "+d.token))
	}
	var remove []string
	if cookieChanged {
		if stripped == "" {
			remove = r.cookieRemove
		} else {
			headers = append(headers, a.set(1, "cookie", stripped))
		}
	}
	if len(identity) > 0 {
		values := claimValues(d.claims, identity)
		var missing []string
		for i, h := range identity {
			if values[i] == "" {
				missing = append(missing, h.header)
				continue
			}
			headers = append(headers, setHeader(h.header, values[i]))
		}
		// Envoy applies removals after sets, so a header is either set or
		// removed here, never both.
		if len(missing) > 0 {
			remove = append(missing, remove...)
			slices.Sort(remove)
		}
	}
	slices.SortFunc(headers, func(a, b *corev3.HeaderValueOption) int {
		return strings.Compare(a.GetHeader().GetKey(), b.GetHeader().GetKey())
	})
	return r.fill(a, headers, remove, d.clearCookie)
}

// set fills the i-th preallocated header mutation.
func (a *okAlloc) set(i int, k, v string) *corev3.HeaderValueOption {
	a.values[i].Key, a.values[i].Value = k, v
	a.opts[i].Header = &a.values[i]
	a.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return &a.opts[i]
}

func (r *responses) fill(a *okAlloc, headers []*corev3.HeaderValueOption, remove []string, clearCookie bool) *authv3.CheckResponse {
	a.ok.Headers = headers
	a.ok.HeadersToRemove = remove
	if clearCookie {
		a.ok.ResponseHeadersToAdd = []*corev3.HeaderValueOption{r.responseCookie()}
	}
	a.wrap.OkResponse = &a.ok
	a.resp.Status = r.okStatus
	a.resp.HttpResponse = &a.wrap
	return &a.resp
}

func (r *responses) okResponse(headers []*corev3.HeaderValueOption, remove []string, clearCookie bool) *authv3.CheckResponse {
	return r.fill(new(okAlloc), headers, remove, clearCookie)
}

// responseCookie is the clearing Set-Cookie on a pass. It must be appended:
// overwriting would drop the upstream's own Set-Cookie headers. Envoy reads
// the deprecated `append` flag for response_headers_to_add (older releases
// read nothing else), so both it and append_action say "append".
func (r *responses) responseCookie() *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: "set-cookie", Value: r.clearCookie},
		//lint:ignore SA1019 Envoy reads the deprecated append flag for response_headers_to_add
		Append:       wrapperspb.Bool(true),
		AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
	}
}

// setHeader replaces every existing value of k (Envoy's OVERWRITE_IF_EXISTS_OR_ADD).
func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
