package authz

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// requireRules are path rules asking things of the session; the env's
// valid session has groups [a b], n 42, email_verified true, acr silver,
// realm_access.roles [ops], a namespaced roles claim, and logged in an hour
// before t0.
func requireRules() []PathRule {
	return []PathRule{
		{Prefix: "/g/b/", Policy: PolicyUser, Require: Require{Claims: map[string][]string{"groups": {"x", "b"}}}},
		{Prefix: "/g/admins/", Policy: PolicyUser, Require: Require{Claims: map[string][]string{"groups": {"admins"}}}},
		{Prefix: "/nested/", Policy: PolicyUser, Require: Require{Claims: map[string][]string{"realm_access.roles": {"ops"}}}},
		{Prefix: "/ns/", Policy: PolicyUser, Require: Require{Claims: map[string][]string{"https://example.com/roles": {"auditor"}}}},
		{Prefix: "/num/", Policy: PolicyUser, Require: Require{Claims: map[string][]string{"n": {"42"}, "email_verified": {"true"}}}},
		{Prefix: "/both/", Policy: PolicyUser, Require: Require{Claims: map[string][]string{"groups": {"a"}, "realm_access.roles": {"admin"}}}},
		{Prefix: "/gold/", Policy: PolicyUser, Redirect: true, Require: Require{ACR: []string{"gold"}}},
		{Prefix: "/silver/", Policy: PolicyUser, Require: Require{ACR: []string{"silver", "gold"}}},
		{Prefix: "/fresh/", Policy: PolicyUser, Require: Require{MaxAge: 10 * time.Minute}},
		{Prefix: "/stale-ok/", Policy: PolicyUser, Require: Require{MaxAge: 2 * time.Hour}},
		{Prefix: "/maybe/", Policy: PolicyUserOrNone, Require: Require{Claims: map[string][]string{"groups": {"admins"}}}},
	}
}

func withRequireRules() envOption {
	return func(c *Config, _ *Deps) { c.PathRules = append(c.PathRules, requireRules()...) }
}

// requireSession is the env's valid record with the claims requireRules test.
func (e *env) requireSession(t testing.TB) {
	t.Helper()
	rec := validRecord()
	rec.ClaimsJson = []byte(`{"sub":"user-1","groups":["a","b"],"n":42,"email_verified":true,"realm_access":{"roles":["ops","viewer"]},"https://example.com/roles":["auditor"]}`)
	rec.Acr = "silver"
	rec.AuthTimeUnix = t0.Add(-time.Hour).Unix()
	if err := e.store.inner.Delete(t.Context(), e.id); err != nil {
		t.Fatal(err)
	}
	e.put(t, e.id, rec)
}

// TestRouteRequirements is T75 at Check: a session lacking a required claim
// gets 403 insufficient_claims, a login too weak or too old 401
// step_up_required with RFC 9470's challenge, and neither reaches the
// route, with or without a token, nor costs a refresh.
func TestRouteRequirements(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path string
		ext        map[string]string // context extensions; nil: the path rules decide
		status     int
		code       string
		challenge  string // WWW-Authenticate must contain it
		loginURL   string
	}{
		{"claim held (any of the values)", "/g/b/x", nil, 200, "", "", ""},
		{"T75_claim_missing_403", "/g/admins/x", nil, 403, "insufficient_claims", "", ""},
		{"nested claim path", "/nested/x", nil, 200, "", "", ""},
		{"namespaced claim with dots in its name", "/ns/x", nil, 200, "", "", ""},
		{"number and boolean claims", "/num/x", nil, 200, "", "", ""},
		{"every claim must hold", "/both/x", nil, 403, "insufficient_claims", "", ""},
		{"T75_acr_too_weak_step_up", "/gold/x", nil, 401, "step_up_required", `acr_values="gold"`, "/bff/login?acr_values=gold"},
		{"acr among the accepted", "/silver/x", nil, 200, "", "", ""},
		{"T75_login_too_old_step_up", "/fresh/x", nil, 401, "step_up_required", "max_age=600", "/bff/login?max_age=600"},
		{"login recent enough", "/stale-ok/x", nil, 200, "", "", ""},
		{"user_or_none: a session lacking the claim is refused, not passed anonymously", "/maybe/x", nil, 403, "insufficient_claims", "", ""},
		{"extension: claim held", "/api/x", map[string]string{extPolicy: "user", "bff.require.groups": "x,b"}, 200, "", "", ""},
		{"extension: claim missing", "/api/x", map[string]string{extPolicy: "user", "bff.require.realm_access.roles": "admin"}, 403, "insufficient_claims", "", ""},
		{"extension: acr and max_age", "/api/x", map[string]string{extPolicy: "user", "bff.require.acr": "gold,platinum", "bff.require.max_age": "5m"}, 401, "step_up_required",
			`acr_values="gold platinum", max_age=300`, "/bff/login?acr_values=gold+platinum&max_age=300"},
		{"extension: a bad requirement fails closed", "/api/x", map[string]string{extPolicy: "user", "bff.require.max_age": "soon"}, 500, "policy_invalid", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withRequireRules())
			e.requireSession(t)
			in := creq(http.MethodGet, tc.path, e.apiHeaders(), tc.ext)
			resp := e.check(t, in)
			if got := status(resp); got != tc.status || errorCode(t, resp) != tc.code {
				t.Fatalf("%d %q, want %d %q (body %s)", got, errorCode(t, resp), tc.status, tc.code, resp.GetDeniedResponse().GetBody())
			}
			if tc.status == 200 {
				if v, _ := upstreamHeader(resp, "authorization"); v != "Bearer "+testToken {
					t.Fatalf("authorization %q", v)
				}
				return
			}
			if resp.GetOkResponse() != nil || e.refresher.calls.Load() != 0 {
				t.Fatal("a refused session reached the route or cost a refresh")
			}
			if clearsCookie(resp) {
				t.Error("a valid session's cookie was cleared")
			}
			if got := deniedHeader(resp, "www-authenticate"); (tc.challenge == "") != (got == "") || !strings.Contains(got, tc.challenge) {
				t.Errorf("www-authenticate %q, want it to contain %q", got, tc.challenge)
			}
			if tc.challenge != "" && !strings.HasPrefix(deniedHeader(resp, "www-authenticate"), `Bearer error="insufficient_user_authentication"`) {
				t.Errorf("challenge is not RFC 9470's: %q", deniedHeader(resp, "www-authenticate"))
			}
			var body struct {
				LoginURL string `json:"loginUrl"`
			}
			_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
			if body.LoginURL != tc.loginURL {
				t.Errorf("loginUrl %q, want %q", body.LoginURL, tc.loginURL)
			}
			// The log names the rule, never the session's claim values.
			for _, secret := range []string{`"ops"`, "viewer", "auditor", `["a","b"]`, "silver"} {
				if strings.Contains(e.logs.String(), secret) {
					t.Errorf("the log holds a claim value %s:\n%s", secret, e.logs.String())
				}
			}
		})
	}
}

// TestStepUpNavigation: a page navigation on a redirecting route goes
// straight to the step-up login, with the page as returnUrl.
func TestStepUpNavigation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRequireRules())
	e.requireSession(t)
	h := e.apiHeaders()
	h["sec-fetch-mode"] = "navigate"
	h["accept"] = "text/html"
	resp := e.check(t, creq(http.MethodGet, "/gold/report?y=2", h, nil))
	loc := deniedHeader(resp, "location")
	if status(resp) != http.StatusFound {
		t.Fatalf("status %d, want 302", status(resp))
	}
	u, err := url.Parse(loc)
	if err != nil || u.Path != "/bff/login" || u.Query().Get("acr_values") != "gold" || u.Query().Get("returnUrl") != "/gold/report?y=2" {
		t.Fatalf("location %q", loc)
	}
}

// TestRequireConfig: the one-map YAML form and every bad requirement named.
func TestRequireConfig(t *testing.T) {
	t.Parallel()
	var rule PathRule
	doc := "prefix: /admin/\npolicy: user\nrequire: { groups: [admins, ops], realm_access.roles: auditor, acr: gold, max_age: 10m }\n"
	if err := yaml.Unmarshal([]byte(doc), &rule); err != nil {
		t.Fatal(err)
	}
	r := rule.Require
	if strings.Join(r.Claims["groups"], ",") != "admins,ops" || strings.Join(r.Claims["realm_access.roles"], ",") != "auditor" ||
		strings.Join(r.ACR, ",") != "gold" || r.MaxAge != 10*time.Minute || len(r.Claims) != 2 {
		t.Fatalf("decoded %+v", r)
	}
	c := DefaultConfig()
	c.PathRules = []PathRule{
		{Prefix: "/a/", Policy: PolicyNone, Require: Require{Claims: map[string][]string{"groups": {"x"}}}},
		{Prefix: "/b/", Policy: PolicyClient, Require: Require{ACR: []string{"gold"}}},
		{Prefix: "/c/", Policy: PolicyUser, Require: Require{Claims: map[string][]string{"a..b": {"x"}, "groups": {}}}},
		{Prefix: "/d/", Policy: PolicyUser, Require: Require{ACR: []string{"go ld"}, MaxAge: time.Millisecond}},
		{Prefix: "/e/", Policy: PolicyUser, Require: Require{Claims: map[string][]string{"groups": {`a"b`}}}},
	}
	err := c.Validate()
	for _, want := range []string{
		"path_rules[0].require: a none route uses no session",
		"path_rules[1].require: a client route uses no session",
		`path_rules[2].require["a..b"]: not a claim path`,
		`path_rules[2].require["groups"]: give 1 to 32 values`,
		"path_rules[3].require.acr",
		"path_rules[3].require.max_age: must be at least 1s",
		`path_rules[4].require["groups"]`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation lacks %q:\n%v", want, err)
		}
	}
}

// TestExtRequireCache: each distinct set of requirement extensions is
// compiled once; a set that differs in any entry is its own, and a bad one
// stays an error.
func TestExtRequireCache(t *testing.T) {
	t.Parallel()
	c := newExtRequireCache()
	a := map[string]string{extPolicy: "user", "bff.require.groups": "a,b", "bff.require.acr": "gold"}
	r1, err := c.get(a)
	if err != nil || r1 == nil {
		t.Fatal(r1, err)
	}
	same := map[string]string{"bff.require.acr": "gold", "bff.require.groups": "a,b", extPolicy: "user", extToken: "x"}
	if r2, _ := c.get(same); r2 != r1 {
		t.Error("the same requirements were compiled again")
	}
	for _, other := range []map[string]string{
		{"bff.require.groups": "a", "bff.require.acr": "gold"},
		{"bff.require.groups": "a,b", "bff.require.acr": "gold", "bff.require.max_age": "1m"},
		{"bff.require.gold": "a,b", "bff.require.acr": "groups"},
	} {
		if r, _ := c.get(other); r == r1 || r == nil {
			t.Errorf("%v served another set's requirements", other)
		}
	}
	for range 2 {
		if _, err := c.get(map[string]string{"bff.require.max_age": "soon"}); !errors.Is(err, errPolicyInvalid) {
			t.Errorf("a bad requirement: %v", err)
		}
	}
	if r, err := c.get(map[string]string{extPolicy: "user"}); r != nil || err != nil {
		t.Errorf("no requirements: %v %v", r, err)
	}
}
