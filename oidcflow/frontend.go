package oidcflow

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// defaultFrontend names the frontend of a config without `frontends:`; it is
// what an empty Deps.Frontend means.
const defaultFrontend = "default"

// FrontendAttr is the log attribute (and metric label) naming the frontend
// a line is about, so one log stream serves many apps.
const FrontendAttr = "frontend"

// Route is where one frontend lives: the hosts it answers on and its app
// path prefix. Selector and Router pick a frontend for a request by it.
type Route struct {
	// Name is the frontend's name, [a-z0-9-]{1,32}: a metric label and log attribute.
	Name string `yaml:"name"`
	// Hosts are the exact :authority values (lower case, without port) the
	// frontend serves; none means any host not claimed by another frontend.
	Hosts []string `yaml:"hosts"`
	// PathPrefix is the app's path prefix, "/" or "/seg/…/": it starts and
	// ends with "/". Empty means "/".
	PathPrefix string `yaml:"path_prefix"`
}

// maxHostLen is the longest DNS name; a longer Host header names no frontend.
const maxHostLen = 253

// validFrontendName is the name syntax: safe in metric labels, log lines
// and Redis keys alike.
var validFrontendName = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// ValidFrontendName reports whether name is a valid frontend name.
func ValidFrontendName(name string) bool { return validFrontendName.MatchString(name) }

// prefixOf is r's path prefix with the default filled in.
func (r Route) prefixOf() string {
	if r.PathPrefix == "" {
		return "/"
	}
	return r.PathPrefix
}

// ValidateRoutes reports every problem in routes at once, each error
// reading "frontends[<name>].<field>: <problem>" (frontends[<index>] when
// the name itself is bad): bad or duplicate names, bad hosts, a host listed
// twice, a bad path_prefix, and two frontends that would match the same
// host and path_prefix. Frontends without hosts compete only with each
// other: a frontend listing a host wins that host over them.
func ValidateRoutes(routes []Route) []error {
	var errs []error
	type owner struct {
		idx  int
		name string
	}
	names := map[string]int{}
	hostPrefix := map[[2]string]owner{} // {host, prefix}; host "" = any host
	for i, r := range routes {
		label := r.Name
		if !ValidFrontendName(r.Name) {
			label = fmt.Sprint(i)
			errs = append(errs, fmt.Errorf("frontends[%d].name: must be 1-32 characters of a-z, 0-9 and -, got %q", i, r.Name))
		} else if j, dup := names[r.Name]; dup {
			errs = append(errs, fmt.Errorf("frontends[%s].name: used by frontends[%d] and frontends[%d]", r.Name, j, i))
		} else {
			names[r.Name] = i
		}
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("frontends[%s].%s: "+format, append([]any{label, field}, args...)...))
		}
		prefix := r.prefixOf()
		prefixOK := validRoutePrefix(prefix)
		if !prefixOK {
			bad("path_prefix", `must start and end with "/" (such as / or /admin/), with no //, spaces, ?, #, %% or \, got %q`, r.PathPrefix)
		}
		seen := map[string]int{}
		for k, h := range r.Hosts {
			field := fmt.Sprintf("hosts[%d]", k)
			if err := checkHost(h); err != nil {
				bad(field, "%v", err)
				continue
			}
			if first, dup := seen[h]; dup {
				bad(field, "%q is listed already as hosts[%d]", h, first)
				continue
			}
			seen[h] = k
			if !prefixOK {
				continue
			}
			if o, clash := hostPrefix[[2]string{h, prefix}]; clash {
				bad(field, "host %s with path_prefix %s is frontends[%s]'s already", h, prefix, o.name)
				continue
			}
			hostPrefix[[2]string{h, prefix}] = owner{i, label}
		}
		if len(r.Hosts) == 0 && prefixOK {
			if o, clash := hostPrefix[[2]string{"", prefix}]; clash {
				bad("path_prefix", "%s on any host is frontends[%s]'s already (give one of them hosts or another path_prefix)", prefix, o.name)
			} else {
				hostPrefix[[2]string{"", prefix}] = owner{i, label}
			}
		}
	}
	return errs
}

// checkHost accepts a lower-case DNS name or an IP address (IPv6 in its
// canonical form, without brackets), with no port and no wildcard: hosts
// match the request's :authority exactly, so anything else could never
// match, or match more than meant.
func checkHost(h string) error {
	switch {
	case h == "":
		return errors.New("must not be empty")
	case strings.Contains(h, "*"):
		return fmt.Errorf("%q: wildcards are not supported; list each host", h)
	case strings.HasPrefix(h, "["):
		return fmt.Errorf("%q: write an IPv6 address without brackets or port", h)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" || a.String() != h {
			return fmt.Errorf("%q: write the IP address in canonical form (%s)", h, a.WithZone(""))
		}
		return nil
	}
	if strings.Contains(h, ":") {
		return fmt.Errorf("%q: must not carry a port", h)
	}
	if strings.ToLower(h) != h {
		return fmt.Errorf("%q: must be lower case", h)
	}
	if !validDNSName(h) {
		return fmt.Errorf("%q: must be a DNS name (labels of a-z, 0-9 and -, at most 253 characters, no trailing dot) or an IP address", h)
	}
	return nil
}

// validDNSName accepts lower-case LDH labels of 1-63 characters, not
// starting or ending with a hyphen.
func validDNSName(h string) bool {
	if len(h) > maxHostLen {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validRoutePrefix accepts "/" and "/seg/…/" of URL path characters.
func validRoutePrefix(p string) bool {
	if p == "/" {
		return true
	}
	return strings.HasSuffix(p, "/") && validPathPrefix(p[:len(p)-1])
}

// Selector picks a frontend's value for a request by host and path: among
// the frontends listing the request's host, the longest path_prefix that
// matches; when none does, among the frontends without hosts, the same.
// Built once per config; Select allocates nothing and costs a few map
// lookups however many frontends there are. Safe for concurrent use.
//
// A path_prefix "/admin/" matches "/admin/…" and "/admin" itself (the app's
// root without its slash belongs to the app, as browsers and Envoy's
// routes treat it), never "/administrator". Paths match byte for byte, so
// they must arrive normalized (Envoy: normalize_path, merge_slashes).
type Selector[T any] struct {
	byName  map[string]T
	byHost  map[string]*prefixSet[T]
	anyHost *prefixSet[T] // nil when every frontend lists hosts
	n       int
}

// prefixSet holds the frontends of one host (or of any host) by prefix
// without its trailing slash ("" for "/"), so the candidates for a path
// are its prefixes ending just before a "/", plus the path itself.
type prefixSet[T any] struct {
	byPrefix map[string]T
	maxLen   int // the longest key: longer candidates need no lookup
}

// NewSelector builds a Selector giving values[i] for routes[i]. It refuses
// routes that ValidateRoutes refuses, and len(values) != len(routes).
func NewSelector[T any](routes []Route, values []T) (*Selector[T], error) {
	if len(routes) != len(values) {
		return nil, fmt.Errorf("build frontend selector: %d routes but %d values", len(routes), len(values))
	}
	if errs := ValidateRoutes(routes); len(errs) > 0 {
		return nil, fmt.Errorf("build frontend selector: %w", errors.Join(errs...))
	}
	s := &Selector[T]{byName: make(map[string]T, len(routes)), byHost: map[string]*prefixSet[T]{}, n: len(routes)}
	for i, r := range routes {
		s.byName[r.Name] = values[i]
		key := strings.TrimSuffix(r.prefixOf(), "/")
		if len(r.Hosts) == 0 {
			if s.anyHost == nil {
				s.anyHost = &prefixSet[T]{byPrefix: map[string]T{}}
			}
			s.anyHost.add(key, values[i])
		}
		for _, h := range r.Hosts {
			ps := s.byHost[h]
			if ps == nil {
				ps = &prefixSet[T]{byPrefix: map[string]T{}}
				s.byHost[h] = ps
			}
			ps.add(key, values[i])
		}
	}
	return s, nil
}

func (p *prefixSet[T]) add(key string, v T) {
	p.byPrefix[key] = v
	p.maxLen = max(p.maxLen, len(key))
}

// Len is the number of frontends.
func (s *Selector[T]) Len() int { return s.n }

// Named is the value of the frontend called name (Envoy's bff.frontend
// context extension names it outright).
func (s *Selector[T]) Named(name string) (T, bool) {
	v, ok := s.byName[name]
	return v, ok
}

// Select is the value of the frontend serving host (an :authority: a port
// and IPv6 brackets are stripped, case does not matter) and path (a query
// or fragment is ignored), or false when none does.
func (s *Selector[T]) Select(host, path string) (T, bool) {
	path = pathOnly(path)
	if len(s.byHost) > 0 {
		if ps := s.hostSet(hostOnly(host)); ps != nil {
			if v, ok := ps.match(path); ok {
				return v, true
			}
		}
	}
	if s.anyHost != nil {
		return s.anyHost.match(path)
	}
	var zero T
	return zero, false
}

// hostSet finds host's frontends, lower-casing into a stack buffer when
// needed: a map lookup keyed by string(bytes) does not allocate.
func (s *Selector[T]) hostSet(host string) *prefixSet[T] {
	upper := false
	for i := 0; i < len(host); i++ {
		if 'A' <= host[i] && host[i] <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return s.byHost[host]
	}
	if len(host) > maxHostLen {
		return nil
	}
	var buf [maxHostLen]byte
	b := buf[:len(host)]
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return s.byHost[string(b)]
}

// pathOnly cuts a query or fragment off path (IndexByte is vectorized;
// IndexAny is not).
func pathOnly(path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	return path
}

// hostOnly strips an :authority's port and an IPv6 literal's brackets:
// "Shop.example.com:8443" → "Shop.example.com", "[::1]:8080" → "::1". A
// bare IPv6 address (more than one colon, no brackets) is kept whole.
func hostOnly(authority string) string {
	if strings.HasPrefix(authority, "[") {
		if end := strings.IndexByte(authority, ']'); end > 0 {
			return authority[1:end]
		}
		return authority
	}
	if i := strings.IndexByte(authority, ':'); i >= 0 && strings.IndexByte(authority[i+1:], ':') < 0 {
		return authority[:i]
	}
	return authority
}

// match finds the longest prefix of path: path itself (a prefix without its
// trailing slash), then path up to each "/" from the right. Candidates
// longer than the longest prefix are skipped, so a long path of many
// slashes costs no more than a short one.
func (p *prefixSet[T]) match(path string) (T, bool) {
	if len(path) <= p.maxLen {
		if v, ok := p.byPrefix[path]; ok {
			return v, true
		}
	}
	for i := min(len(path)-1, p.maxLen); i >= 0; i-- {
		if path[i] != '/' {
			continue
		}
		if v, ok := p.byPrefix[path[:i]]; ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// HostsOverlap reports whether a browser could send one frontend's
// host-only cookies to the other: a host belongs to both lists, or either
// list is empty (every host).
func HostsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, h := range a {
		for _, g := range b {
			if strings.EqualFold(h, g) {
				return true
			}
		}
	}
	return false
}
