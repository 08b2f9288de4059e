package authz

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/session"
)

// Config is the `authz:` section of envoy-bff's config file: where a route's
// policy comes from when Envoy does not name it, and what Check adds upstream.
type Config struct {
	// DefaultPolicy applies to a path no rule matches and no route names. It
	// defaults to "user" so a forgotten route fails closed.
	DefaultPolicy Policy `yaml:"default_policy"`
	// PathRules give policies by path, for proxies that cannot set
	// context_extensions (Istio's CUSTOM provider). An exact rule beats every
	// prefix rule; among prefixes the longest wins. Paths are matched after
	// normalisation, without query or fragment.
	PathRules []PathRule `yaml:"path_rules"`
	// IdentityHeaders maps an upstream request header to an ID-token claim
	// (x-user-sub: sub). Each header is removed from every incoming request
	// before it is set, so a client can never supply it.
	IdentityHeaders map[string]string `yaml:"identity_headers"`
	// LoginPath is where unauthenticated navigations are redirected on routes
	// that allow it; returnUrl carries the original path.
	LoginPath string `yaml:"login_path"`
	// CheckTimeout bounds the refresh (and client-token) work of one Check,
	// so a slow Redis or provider gets envoy-bff's own 503 with retry-after
	// before Envoy's ext_authz timeout (5s in envoy/envoy.yaml.tmpl) answers
	// a bare 503 for it; the Check's one store read is bounded by the store's
	// own command budget. It MUST be shorter than Envoy's timeout, and longer
	// than one Redis command can take (session.RedisConfig.CommandBudget).
	// Check also ends checkReserve before the deadline Envoy sends, whichever
	// comes first.
	CheckTimeout time.Duration `yaml:"check_timeout"`
	// AllowedOrigins are the other origins ("https://app.example.com")
	// whose pages may call this frontend's APIs with credentials: envoy-bff
	// answers their CORS preflights and adds Access-Control-Allow-* to
	// their responses, and lets them open realtime routes. The frontend's
	// own origin never needs listing. No wildcards.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// PathRule assigns a policy to a path or a path prefix. Set exactly one of
// Prefix and Exact.
type PathRule struct {
	// Prefix matches every normalised path that starts with it ("/api/").
	Prefix string `yaml:"prefix"`
	// Exact matches one normalised path only ("/"); use it for anonymous routes.
	Exact string `yaml:"exact"`
	// Policy is none, user, user_or_none, client or user_or_client.
	Policy Policy `yaml:"policy"`
	// ClientToken names the client-credentials token (oidc.client_tokens) that
	// client and user_or_client send; empty means "default".
	ClientToken string `yaml:"client_token"`
	// Redirect sends unauthenticated browser navigations a 302 to LoginPath
	// instead of a 401.
	Redirect bool `yaml:"redirect"`
	// Require is what the route asks of the session (claims, acr,
	// max_age); only policies that use a session may require.
	Require Require `yaml:"require"`
	// Token names the token profile whose token the route sends (the
	// `tokens:` section); empty sends the session's own access token.
	Token string `yaml:"token"`
	// Realtime lets WebSocket handshakes and EventSource requests, which
	// cannot carry the anti-forgery header, pass on the origin rule
	// instead (Origin and Sec-Fetch-Site). Only user and user_or_none
	// routes may set it.
	Realtime bool `yaml:"realtime"`
}

// TokenProfileNames lists every token profile a path rule names, so the
// config loader can check each is defined.
func (c Config) TokenProfileNames() []string {
	var names []string
	for _, r := range c.PathRules {
		if r.Token != "" {
			names = append(names, r.Token)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// ClientTokenNames lists every client token a path rule names (the default
// one included when a client policy names none), so the config loader can
// check each is defined under oidc.client_tokens.
func (c Config) ClientTokenNames() []string {
	var names []string
	if c.DefaultPolicy.usesClientToken() {
		names = append(names, defaultClientToken)
	}
	for _, r := range c.PathRules {
		if r.Policy.usesClientToken() {
			names = append(names, cmp.Or(r.ClientToken, defaultClientToken))
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Bounds and default of Config.CheckTimeout. The default leaves 2s of
// Envoy's 5s for the network and Envoy itself, and fits one Redis command
// under session.DefaultConfig (2.5s worst case) with room for the refresh.
const (
	defaultCheckTimeout = 3 * time.Second
	minCheckTimeout     = 10 * time.Millisecond
	maxCheckTimeout     = time.Minute
)

// DefaultConfig is fail-closed: every path needs a session.
func DefaultConfig() Config {
	return Config{
		DefaultPolicy: PolicyUser,
		LoginPath:     "/bff/login",
		CheckTimeout:  defaultCheckTimeout,
	}
}

// isReservedHeader reports headers that may never be identity headers: Check
// owns them, or setting them would change how the request is framed or routed.
func isReservedHeader(lower string) bool {
	switch lower {
	case "authorization", "cookie", "host", "content-length", "transfer-encoding",
		"connection", "te", "upgrade", "keep-alive", "proxy-connection", "expect",
		"x-request-id":
		return true
	}
	return strings.HasPrefix(lower, "x-envoy-")
}

// Validate reports every bad field at once, each as "<field>: <problem>".
func (c Config) Validate() error {
	var errs []error
	if err := validatePolicy(string(c.DefaultPolicy)); err != nil {
		errs = append(errs, fmt.Errorf("default_policy: %w", err))
	}
	exact := map[string]int{}
	prefix := map[string]int{}
	for i, r := range c.PathRules {
		field := fmt.Sprintf("path_rules[%d]", i)
		switch {
		case r.Prefix == "" && r.Exact == "":
			errs = append(errs, fmt.Errorf("%s: set one of prefix or exact", field))
		case r.Prefix != "" && r.Exact != "":
			errs = append(errs, fmt.Errorf("%s: set only one of prefix or exact", field))
		case r.Exact != "":
			errs = append(errs, validateRulePath(field+".exact", r.Exact, exact, i)...)
		default:
			errs = append(errs, validateRulePath(field+".prefix", r.Prefix, prefix, i)...)
		}
		if err := validatePolicy(string(r.Policy)); err != nil {
			errs = append(errs, fmt.Errorf("%s.policy: %w", field, err))
		}
		if r.Token != "" && !session.ValidClientTokenName(r.Token) {
			errs = append(errs, fmt.Errorf("%s.token: must be 1-64 characters of a-z, 0-9, _ and -", field))
		}
		if !r.Require.empty() {
			if r.Policy == PolicyNone || r.Policy == PolicyClient {
				errs = append(errs, fmt.Errorf("%s.require: a %s route uses no session to require anything of", field, r.Policy))
			}
			errs = append(errs, r.Require.validate(field+".require")...)
		}
		if r.Realtime && !r.Policy.allowsRealtime() {
			errs = append(errs, fmt.Errorf("%s.realtime: only user and user_or_none routes may be realtime", field))
		}
		switch {
		case r.ClientToken == "":
		case !r.Policy.usesClientToken():
			errs = append(errs, fmt.Errorf("%s.client_token: only the client and user_or_client policies send a client token", field))
		case !session.ValidClientTokenName(r.ClientToken):
			errs = append(errs, fmt.Errorf("%s.client_token: must be 1-64 characters of a-z, 0-9, _ and -", field))
		}
	}
	names := make([]string, 0, len(c.IdentityHeaders))
	for h := range c.IdentityHeaders {
		names = append(names, h)
	}
	slices.Sort(names) // stable error order
	seen := map[string]string{}
	for _, h := range names {
		field := fmt.Sprintf("identity_headers[%q]", h)
		lower := strings.ToLower(h)
		switch {
		case !isToken(h):
			errs = append(errs, fmt.Errorf("%s: not a valid header name", field))
		case strings.Contains(h, "_"):
			errs = append(errs, fmt.Errorf("%s: use dashes, not underscores (Envoy rejects client headers with underscores, so they cannot be stripped)", field))
		case isReservedHeader(lower):
			errs = append(errs, fmt.Errorf("%s: reserved header", field))
		case seen[lower] != "":
			errs = append(errs, fmt.Errorf("%s: same header as %q", field, seen[lower]))
		}
		seen[lower] = h
		if claim := c.IdentityHeaders[h]; strings.TrimSpace(claim) == "" {
			errs = append(errs, fmt.Errorf("%s: claim name is empty", field))
		}
	}
	if !isLocalPath(c.LoginPath) {
		errs = append(errs, fmt.Errorf("login_path: must be a local path such as /bff/login, got %q", c.LoginPath))
	}
	if _, err := oidcflow.ParseOrigins("allowed_origins", c.AllowedOrigins); err != nil {
		errs = append(errs, err)
	}
	if c.CheckTimeout < minCheckTimeout || c.CheckTimeout > maxCheckTimeout {
		errs = append(errs, fmt.Errorf("check_timeout: must be between %s and %s (and shorter than Envoy's ext_authz timeout), got %s",
			minCheckTimeout, maxCheckTimeout, c.CheckTimeout))
	}
	return errors.Join(errs...)
}

// validateRulePath requires a rule's path in the form Check matches against
// (a rule that is not normalised would never match) and no duplicates.
func validateRulePath(field, p string, seen map[string]int, i int) []error {
	var errs []error
	if n, err := normalisePath(p); err != nil || n != p || strings.ContainsAny(p, "?#") {
		errs = append(errs, fmt.Errorf("%s: must be a normalised path starting with \"/\" (no query, %%2F, dot segments or //), got %q", field, p))
	}
	if j, dup := seen[p]; dup {
		errs = append(errs, fmt.Errorf("%s: duplicate of path_rules[%d]", field, j))
	} else {
		seen[p] = i
	}
	return errs
}

// isLocalPath accepts a path-only reference on this origin.
func isLocalPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "?#\\") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token (a valid header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
