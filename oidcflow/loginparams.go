package oidcflow

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// errInvalidLoginParam means /login was given a provider parameter it
// forwards, in a form it will not forward.
var errInvalidLoginParam = errors.New("invalid login parameter")

// errStepUpFailed means the provider answered a login that asked for an
// acr or a maximum authentication age with an ID token meeting neither.
var errStepUpFailed = errors.New("the provider did not meet the requested authentication")

// errSilentLoginAnswered is not a failure: a prompt=none login the provider
// could not complete without the user was sent back to its returnUrl with
// the bff_login=required marker. The callback has answered already.
var errSilentLoginAnswered = errors.New("silent login needs the user")

// SilentLoginMarker is the query parameter a refused silent login
// (prompt=none) adds to its returnUrl, with the value "required": the SPA
// then falls back to an interactive login.
const SilentLoginMarker = "bff_login"

// Bounds of the forwarded login parameters.
const (
	maxLoginParamLen = 256
	maxLoginValues   = 10
	maxMaxAge        = 10 * 365 * 24 * time.Hour
)

// loginParams are the provider parameters a browser may pass through
// /login. Everything else in the query (redirect_uri, scope, client_id,
// response_mode, request, request_uri, state, nonce, …) is never forwarded:
// those come from the configuration and the flow alone (T77).
type loginParams struct {
	prompt    string // space-separated: none alone, or login, consent, select_account
	maxAge    *int64 // seconds; nil when not asked
	acrValues string // space-separated
	loginHint string
	uiLocales string // space-separated
}

// forwardedLoginParams are the names parseLoginParams reads.
var forwardedLoginParams = [...]string{"prompt", "max_age", "acr_values", "login_hint", "ui_locales"}

// parseLoginParams reads and validates the forwarded parameters of q.
func parseLoginParams(q url.Values) (loginParams, error) {
	var p loginParams
	for _, k := range forwardedLoginParams {
		if len(q[k]) > 1 {
			return p, fmt.Errorf("%w: %s given more than once", errInvalidLoginParam, k)
		}
		if v := q.Get(k); len(v) > maxLoginParamLen || strings.ContainsFunc(v, isCtl) {
			return p, fmt.Errorf("%w: %s longer than %d bytes or holding control characters", errInvalidLoginParam, k, maxLoginParamLen)
		}
	}
	if v := q.Get("prompt"); v != "" {
		vals := strings.Fields(v)
		for _, x := range vals {
			switch x {
			case "login", "consent", "select_account":
			case "none":
				if len(vals) > 1 {
					return p, fmt.Errorf("%w: prompt=none cannot be combined", errInvalidLoginParam)
				}
			default:
				return p, fmt.Errorf("%w: prompt must be none, login, consent or select_account", errInvalidLoginParam)
			}
		}
		p.prompt = strings.Join(vals, " ")
	}
	if v, ok := q["max_age"]; ok {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || n < 0 || n > int64(maxMaxAge/time.Second) || strings.HasPrefix(v[0], "+") {
			return p, fmt.Errorf("%w: max_age must be a whole number of seconds", errInvalidLoginParam)
		}
		p.maxAge = &n
	}
	if v := q.Get("acr_values"); v != "" {
		vals := strings.Fields(v)
		if len(vals) > maxLoginValues || strings.ContainsAny(v, `"\`) {
			return p, fmt.Errorf("%w: acr_values must be at most %d space-separated values without quotes or backslashes", errInvalidLoginParam, maxLoginValues)
		}
		p.acrValues = strings.Join(vals, " ")
	}
	p.loginHint = q.Get("login_hint")
	if v := q.Get("ui_locales"); v != "" {
		vals := strings.Fields(v)
		for _, x := range vals {
			if strings.ContainsFunc(x, func(r rune) bool {
				return !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			}) {
				return p, fmt.Errorf("%w: ui_locales must be language tags such as en-GB", errInvalidLoginParam)
			}
		}
		if len(vals) > maxLoginValues {
			return p, fmt.Errorf("%w: at most %d ui_locales", errInvalidLoginParam, maxLoginValues)
		}
		p.uiLocales = strings.Join(vals, " ")
	}
	return p, nil
}

// authOptions are p's parameters for the authorization request.
func (p loginParams) authOptions() []oauth2.AuthCodeOption {
	var out []oauth2.AuthCodeOption
	for _, kv := range [...][2]string{{"prompt", p.prompt}, {"acr_values", p.acrValues}, {"login_hint", p.loginHint}, {"ui_locales", p.uiLocales}} {
		if kv[1] != "" {
			out = append(out, oauth2.SetAuthURLParam(kv[0], kv[1]))
		}
	}
	if p.maxAge != nil {
		out = append(out, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(*p.maxAge, 10)))
	}
	return out
}

// remember records in ls what the callback must check the answer against.
func (p loginParams) remember(ls *sessionpb.LoginState) {
	ls.Prompt, ls.AcrValues, ls.MaxAgeSeconds = p.prompt, p.acrValues, p.maxAge
}

// authTimeLeeway is the clock skew tolerated when an ID token's auth_time
// is held to a requested max_age.
const authTimeLeeway = 30 * time.Second

// checkAsked holds a verified ID token's acr and auth_time to what the
// login asked: an acr among acr_values, and for max_age an auth_time that
// recent. Providers treat both as voluntary; envoy-bff does not, or a
// step-up would loop.
func checkAsked(ls *sessionpb.LoginState, acr string, authTime int64, now time.Time) error {
	if want := ls.GetAcrValues(); want != "" && !containsField(want, acr) {
		return fmt.Errorf("%w: acr %q is none of the requested %q", errStepUpFailed, acr, want)
	}
	if ls.MaxAgeSeconds != nil {
		if authTime == 0 {
			return fmt.Errorf("%w: max_age was requested and the id token has no auth_time", errStepUpFailed)
		}
		age := now.Sub(time.Unix(authTime, 0))
		if age > time.Duration(ls.GetMaxAgeSeconds())*time.Second+authTimeLeeway {
			return fmt.Errorf("%w: authenticated %s ago, max_age %ds", errStepUpFailed, age.Round(time.Second), ls.GetMaxAgeSeconds())
		}
	}
	return nil
}

// containsField reports whether the space-separated list holds v.
func containsField(list, v string) bool {
	if v == "" {
		return false
	}
	for f := range strings.FieldsSeq(list) {
		if f == v {
			return true
		}
	}
	return false
}

// needsUser reports the provider's answers to prompt=none that mean "the
// user must interact" (OpenID Connect Core 3.1.2.6).
func needsUser(code string) bool {
	switch code {
	case "login_required", "interaction_required", "consent_required", "account_selection_required":
		return true
	}
	return false
}

// withMarker is returnURL with bff_login=required added to its query.
func withMarker(returnURL string) string {
	path, frag, _ := strings.Cut(returnURL, "#")
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	out := path + sep + SilentLoginMarker + "=required"
	if frag != "" {
		out += "#" + frag
	}
	return out
}
