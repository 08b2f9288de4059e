package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// Require is what a route asks of a session beyond its existence, as in
// oauth2-proxy's --allowed-group and Pomerium's policies. In YAML it is one
// map: `acr` and `max_age` are the step-up requirements, every other key
// is a claim path with the values any one of which satisfies it:
//
//	require: { groups: [admins], realm_access.roles: [ops], acr: [gold], max_age: 10m }
type Require struct {
	// Claims maps a claim path to the values it must hold one of. A path is
	// first looked up as a whole claim name (namespaced claims such as
	// https://example.com/groups), then by dots into nested objects
	// (realm_access.roles). A string claim holds its value; an array holds
	// each of its strings, numbers and booleans.
	Claims map[string][]string
	// ACR lists the authentication context classes any one of which the
	// login must have reached (the ID token's acr); otherwise 401
	// step_up_required.
	ACR []string
	// MaxAge bounds the time since the user last authenticated (the ID
	// token's auth_time); otherwise 401 step_up_required.
	MaxAge time.Duration
}

// Keys of Require that are not claims.
const (
	requireACR    = "acr"
	requireMaxAge = "max_age"
)

// Limits that Validate enforces on requirements.
const (
	maxRequireValues = 32
	maxRequireLen    = 256
)

// UnmarshalYAML reads the one-map form; a single value may stand for a
// list of one.
func (r *Require) UnmarshalYAML(n *yaml.Node) error {
	var raw map[string]yaml.Node
	if err := n.Decode(&raw); err != nil {
		return err
	}
	out := Require{}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		v := raw[k]
		switch k {
		case requireMaxAge:
			var s string
			if err := v.Decode(&s); err != nil {
				return fmt.Errorf("max_age: %w", err)
			}
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("max_age: not a duration such as 10m: %q", s)
			}
			out.MaxAge = d
		default:
			var list []string
			if v.Kind == yaml.ScalarNode {
				list = []string{v.Value}
			} else if err := v.Decode(&list); err != nil {
				return fmt.Errorf("%s: want a value or a list of values: %w", k, err)
			}
			if k == requireACR {
				out.ACR = list
				continue
			}
			if out.Claims == nil {
				out.Claims = map[string][]string{}
			}
			out.Claims[k] = list
		}
	}
	*r = out
	return nil
}

// empty reports whether r asks nothing.
func (r Require) empty() bool { return len(r.Claims) == 0 && len(r.ACR) == 0 && r.MaxAge == 0 }

// validate reports every bad part of r, each as "<field>: <problem>".
func (r Require) validate(field string) []error {
	var errs []error
	// The field name is built only for an error: Check validates the
	// requirements of context extensions on every request.
	values := func(f func() string, vals []string, spaces bool) {
		if len(vals) == 0 || len(vals) > maxRequireValues {
			errs = append(errs, fmt.Errorf("%s: give 1 to %d values", f(), maxRequireValues))
		}
		for _, v := range vals {
			if v == "" || len(v) > maxRequireLen || strings.ContainsFunc(v, func(c rune) bool {
				return c < ' ' || c == 0x7f || (!spaces && c == ' ') || c == '"' || c == '\\' || c == ','
			}) {
				errs = append(errs, fmt.Errorf("%s: %q must be 1-%d characters without control characters, quotes, backslashes or commas", f(), v, maxRequireLen))
			}
		}
	}
	for path, vals := range r.Claims {
		if path == "" || len(path) > maxRequireLen || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") || strings.Contains(path, "..") {
			errs = append(errs, fmt.Errorf("%s[%q]: not a claim path such as groups or realm_access.roles", field, path))
			continue
		}
		values(func() string { return fmt.Sprintf("%s[%q]", field, path) }, vals, true)
	}
	if r.ACR != nil {
		values(func() string { return field + ".acr" }, r.ACR, false)
	}
	if r.MaxAge < 0 || (r.MaxAge > 0 && r.MaxAge < time.Second) {
		errs = append(errs, fmt.Errorf("%s.max_age: must be at least 1s, got %s", field, r.MaxAge))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) }) // stable order
	return errs
}

// requirement is a Require compiled for Check: claim paths in a fixed
// order, nothing to sort or allocate per request.
type requirement struct {
	claims []claimRule
	acr    []string
	maxAge time.Duration
}

// claimRule is one required claim path and the values that satisfy it.
type claimRule struct {
	path   string
	values []string
}

// compile returns r for Check; nil when r asks nothing.
func (r Require) compile() *requirement {
	if r.empty() {
		return nil
	}
	c := &requirement{acr: r.ACR, maxAge: r.MaxAge}
	for _, path := range slices.Sorted(maps.Keys(r.Claims)) {
		c.claims = append(c.claims, claimRule{path: path, values: r.Claims[path]})
	}
	return c
}

// Context extensions that require, for routes Envoy configures: one key per
// claim path (bff.require.groups: "admins,ops"), bff.require.acr: "gold"
// and bff.require.max_age: "10m". Values are comma-separated.
const extRequirePrefix = "bff.require."

// extRequire reads the requirements in a route's context extensions; nil
// when there are none.
func extRequire(ext map[string]string) (*requirement, error) {
	var r *Require
	for k, v := range ext {
		name, ok := strings.CutPrefix(k, extRequirePrefix)
		if !ok {
			continue
		}
		if r == nil {
			r = &Require{}
		}
		switch name {
		case requireMaxAge:
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, fmt.Errorf("%w: %s is not a duration", errPolicyInvalid, k)
			}
			r.MaxAge = d
		case requireACR:
			r.ACR = strings.Split(v, ",")
		default:
			if r.Claims == nil {
				r.Claims = map[string][]string{}
			}
			r.Claims[name] = strings.Split(v, ",")
		}
	}
	if r == nil {
		return nil, nil
	}
	if errs := r.validate("context_extensions"); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", errPolicyInvalid, errors.Join(errs...))
	}
	return r.compile(), nil
}

// maxCachedExtRequires bounds extRequireCache; when full it starts over.
const maxCachedExtRequires = 1024

// extRequireCache keeps the compiled requirements of context extensions:
// Envoy sends the same ones on every request of a route, so each distinct
// set is parsed and validated once. An entry is found by an
// order-independent hash of the bff.require.* entries and used only if
// they are exactly the same.
type extRequireCache struct {
	seed maphash.Seed
	mu   sync.RWMutex
	sets map[uint64]extRequireEntry
}

// extRequireEntry is one set of requirement extensions and what it compiled to.
type extRequireEntry struct {
	ext map[string]string // the bff.require.* entries
	req *requirement
	err error
}

func newExtRequireCache() *extRequireCache {
	return &extRequireCache{seed: maphash.MakeSeed(), sets: map[uint64]extRequireEntry{}}
}

// get returns the compiled requirements of ext's bff.require.* entries;
// nil when there are none.
func (c *extRequireCache) get(ext map[string]string) (*requirement, error) {
	var sum uint64
	n := 0
	for k, v := range ext {
		if !strings.HasPrefix(k, extRequirePrefix) {
			continue
		}
		// A sum is independent of the map's order; the second hash is
		// mixed so that swapping keys and values changes it.
		sum += maphash.String(c.seed, k) ^ (maphash.String(c.seed, v) * 0x9e3779b97f4a7c15)
		n++
	}
	if n == 0 {
		return nil, nil
	}
	c.mu.RLock()
	e, ok := c.sets[sum]
	c.mu.RUnlock()
	if ok && len(e.ext) == n && sameEntries(e.ext, ext) {
		return e.req, e.err
	}
	req, err := extRequire(ext)
	own := make(map[string]string, n)
	for k, v := range ext {
		if strings.HasPrefix(k, extRequirePrefix) {
			own[k] = v
		}
	}
	c.mu.Lock()
	if len(c.sets) >= maxCachedExtRequires {
		clear(c.sets)
	}
	c.sets[sum] = extRequireEntry{ext: own, req: req, err: err}
	c.mu.Unlock()
	return req, err
}

// sameEntries reports whether every entry of want is in ext.
func sameEntries(want, ext map[string]string) bool {
	for k, v := range want {
		if got, ok := ext[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// errStepUp is a session that exists but whose login is too weak or too
// old for the route: 401 step_up_required with what to ask for.
var errStepUp = errors.New("step-up authentication required")

// stepUpError carries what the route asks, for the answer's
// WWW-Authenticate header and loginUrl.
type stepUpError struct {
	acr    []string
	maxAge time.Duration
	why    string
}

func (e *stepUpError) Error() string { return "step-up authentication required: " + e.why }
func (e *stepUpError) Unwrap() error { return errStepUp }

// meets checks sess against r: claims first (403 insufficient_claims),
// then acr and max_age (401 step_up_required). Errors name the rule, never
// a claim's value (T75).
func (r *requirement) meets(sess *sessionpb.Session, now time.Time, claims *claimsCache) error {
	if len(r.claims) > 0 {
		set, ok := claims.get(sess.GetClaimsJson())
		for _, c := range r.claims {
			if !ok || !set.holds(c.path, c.values) {
				return fmt.Errorf("%w: the route requires claim %s", errInsufficientClaims, c.path)
			}
		}
	}
	if len(r.acr) > 0 && !slices.Contains(r.acr, sess.GetAcr()) {
		return &stepUpError{acr: r.acr, maxAge: r.maxAge, why: "the login's acr is not one the route accepts"}
	}
	if r.maxAge > 0 {
		at := sess.GetAuthTimeUnix()
		if at == 0 || now.Sub(time.Unix(at, 0)) > r.maxAge {
			return &stepUpError{acr: r.acr, maxAge: r.maxAge, why: "the login is older than the route's max_age"}
		}
	}
	return nil
}

// stepUpQuery is the login query that asks the provider for what e needs.
func (e *stepUpError) stepUpQuery() string {
	q := url.Values{}
	if len(e.acr) > 0 {
		q.Set("acr_values", strings.Join(e.acr, " "))
	}
	if e.maxAge > 0 {
		q.Set("max_age", strconv.FormatInt(int64(e.maxAge/time.Second), 10))
	}
	return q.Encode()
}

// wwwAuthenticate is RFC 9470's challenge for e.
func (e *stepUpError) wwwAuthenticate() string {
	var b strings.Builder
	b.WriteString(`Bearer error="insufficient_user_authentication", error_description="A stronger or more recent authentication is required"`)
	if len(e.acr) > 0 {
		b.WriteString(`, acr_values="` + strings.Join(e.acr, " ") + `"`)
	}
	if e.maxAge > 0 {
		b.WriteString(`, max_age=` + strconv.FormatInt(int64(e.maxAge/time.Second), 10))
	}
	return b.String()
}

// claimSet is one ID token's claims, decoded once.
type claimSet map[string]any

// holds reports whether the claim at path holds one of want.
func (c claimSet) holds(path string, want []string) bool {
	v, ok := c[path]
	if !ok {
		var cur any = map[string]any(c)
		for seg := range strings.SplitSeq(path, ".") {
			obj, isObj := cur.(map[string]any)
			if !isObj {
				return false
			}
			if cur, ok = obj[seg]; !ok {
				return false
			}
		}
		v = cur
	}
	switch t := v.(type) {
	case []any:
		for _, item := range t {
			if s, ok := scalar(item); ok && slices.Contains(want, s) {
				return true
			}
		}
		return false
	default:
		s, ok := scalar(t)
		return ok && slices.Contains(want, s)
	}
}

// scalar renders a JSON string, number or boolean for comparison.
func scalar(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case bool:
		return strconv.FormatBool(t), true
	}
	return "", false
}

// maxCachedClaimSets bounds claimsCache; when full it starts over.
const maxCachedClaimSets = 10_000

// claimsCache keeps decoded claim sets by their JSON text, so a route with
// claim requirements decodes a session's claims once, not on every Check.
// An entry is found by a hash of the text and used only if the text is the
// same: a refresh that changes the claims is a new entry, and nothing can
// serve one session's claims for another's.
type claimsCache struct {
	seed maphash.Seed
	mu   sync.RWMutex
	sets map[uint64]claimsEntry
}

// claimsEntry is one decoded claim set and the text it came from.
type claimsEntry struct {
	text string
	set  claimSet // nil: the text does not decode
}

func newClaimsCache() *claimsCache {
	return &claimsCache{seed: maphash.MakeSeed(), sets: map[uint64]claimsEntry{}}
}

// get returns raw's decoded claims; false when they do not decode.
func (c *claimsCache) get(raw []byte) (claimSet, bool) {
	h := maphash.Bytes(c.seed, raw)
	c.mu.RLock()
	e, ok := c.sets[h]
	c.mu.RUnlock()
	if ok && e.text == string(raw) { // compared in place: no allocation
		return e.set, e.set != nil
	}
	var set claimSet
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&set); err != nil {
		set = nil
	}
	c.mu.Lock()
	if len(c.sets) >= maxCachedClaimSets {
		clear(c.sets)
	}
	c.sets[h] = claimsEntry{text: string(raw), set: set}
	c.mu.Unlock()
	return set, set != nil
}
