package oidcflow

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// testRoutes are four frontends: two on one host by prefix, one on an IPv6
// literal, and two for any host.
var testRoutes = []Route{
	{Name: "shop", Hosts: []string{"shop.example.com"}, PathPrefix: "/"},
	{Name: "shop-admin", Hosts: []string{"shop.example.com"}, PathPrefix: "/admin/"},
	{Name: "shop-admin-reports", Hosts: []string{"shop.example.com"}, PathPrefix: "/admin/reports/"},
	{Name: "local", Hosts: []string{"::1", "127.0.0.1"}, PathPrefix: "/"},
	{Name: "portal", PathPrefix: "/"},
	{Name: "partners", PathPrefix: "/partners/"},
	{Name: "api-only", Hosts: []string{"api.example.com"}, PathPrefix: "/v1/"},
}

// namesOf gives each route its own name as its value.
func namesOf(routes []Route) []string {
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = r.Name
	}
	return out
}

func TestSelectorSelect(t *testing.T) {
	t.Parallel()
	sel, err := NewSelector(testRoutes, namesOf(testRoutes))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, host, path, want string // want "" = no frontend
	}{
		{"host_root", "shop.example.com", "/", "shop"},
		{"host_with_port", "shop.example.com:8443", "/cart", "shop"},
		{"upper_case_host", "SHOP.Example.COM", "/cart", "shop"},
		{"upper_case_host_with_port", "Shop.Example.Com:443", "/admin/x", "shop-admin"},
		{"longest_prefix", "shop.example.com", "/admin/reports/2024", "shop-admin-reports"},
		{"middle_prefix", "shop.example.com", "/admin/users", "shop-admin"},
		{"prefix_itself", "shop.example.com", "/admin/", "shop-admin"},
		// Decision: the app's root without its trailing slash is the app's.
		{"prefix_without_trailing_slash", "shop.example.com", "/admin", "shop-admin"},
		{"deeper_prefix_without_slash", "shop.example.com", "/admin/reports", "shop-admin-reports"},
		{"prefix_boundary", "shop.example.com", "/administrator", "shop"},
		{"prefix_boundary_deeper", "shop.example.com", "/admin/reportsX/1", "shop-admin"},
		{"path_is_case_sensitive", "shop.example.com", "/ADMIN/x", "shop"},
		{"query_ignored", "shop.example.com", "/admin?next=/admin/reports/", "shop-admin"},
		{"fragment_ignored", "shop.example.com", "/admin/reports#x", "shop-admin-reports"},
		{"ipv6_literal_with_port", "[::1]:8080", "/x", "local"},
		{"ipv6_literal", "[::1]", "/x", "local"},
		{"ipv6_bare", "::1", "/x", "local"},
		{"ipv4_with_port", "127.0.0.1:10000", "/", "local"},
		{"host_frontend_beats_hostless", "shop.example.com", "/partners/x", "shop"},
		{"unknown_host_hostless_root", "other.example.com", "/x", "portal"},
		{"unknown_host_hostless_prefix", "other.example.com:80", "/partners/a/b", "partners"},
		{"unknown_host_hostless_prefix_itself", "other.example.com", "/partners", "partners"},
		{"empty_host_hostless", "", "/", "portal"},
		// A listed host whose prefixes miss falls back to the host-less ones.
		{"listed_host_prefix_misses", "api.example.com", "/partners/x", "partners"},
		{"listed_host_prefix_misses_root", "api.example.com", "/v2/x", "portal"},
		{"listed_host_prefix_hits", "api.example.com", "/v1/x", "api-only"},
		{"bracket_without_close", "[::1", "/x", "portal"},
		{"path_not_starting_with_slash", "other.example.com", "*", ""},
		{"long_path_of_slashes", "other.example.com", strings.Repeat("/", 10000), "portal"},
		{"long_upper_host", strings.Repeat("A", 300), "/partners/", "partners"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := sel.Select(tc.host, tc.path)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("Select(%q, %q) = %q, %v; want %q", tc.host, tc.path, got, ok, tc.want)
			}
		})
	}
}

func TestSelectorWithoutHostlessFrontends(t *testing.T) {
	t.Parallel()
	routes := []Route{{Name: "shop", Hosts: []string{"shop.example.com"}, PathPrefix: "/app/"}}
	sel, err := NewSelector(routes, namesOf(routes))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ host, path string }{
		{"shop.example.com", "/"},
		{"shop.example.com", "/application"},
		{"other.example.com", "/app/x"},
	} {
		if got, ok := sel.Select(tc.host, tc.path); ok {
			t.Errorf("Select(%q, %q) = %q; want no frontend", tc.host, tc.path, got)
		}
	}
	if got, ok := sel.Select("shop.example.com", "/app"); !ok || got != "shop" {
		t.Errorf("Select(/app) = %q, %v", got, ok)
	}
}

func TestSelectorNamedAndLen(t *testing.T) {
	t.Parallel()
	sel, err := NewSelector(testRoutes, namesOf(testRoutes))
	if err != nil {
		t.Fatal(err)
	}
	if sel.Len() != len(testRoutes) {
		t.Fatalf("Len = %d", sel.Len())
	}
	if v, ok := sel.Named("partners"); !ok || v != "partners" {
		t.Fatalf("Named(partners) = %q, %v", v, ok)
	}
	if _, ok := sel.Named("nope"); ok {
		t.Fatal("Named(nope) found something")
	}
	empty, err := NewSelector[int](nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := empty.Select("a.example", "/"); ok || empty.Len() != 0 {
		t.Fatal("an empty selector selected something")
	}
}

func TestNewSelectorRefuses(t *testing.T) {
	t.Parallel()
	if _, err := NewSelector(testRoutes, []string{"one"}); err == nil || !strings.Contains(err.Error(), "7 routes but 1 values") {
		t.Fatalf("length mismatch: %v", err)
	}
	_, err := NewSelector([]Route{{Name: "a"}, {Name: "a"}}, []int{1, 2})
	if err == nil || !strings.Contains(err.Error(), "frontends[a].name:") {
		t.Fatalf("duplicate name: %v", err)
	}
}

func TestValidateRoutes(t *testing.T) {
	t.Parallel()
	if errs := ValidateRoutes(testRoutes); len(errs) != 0 {
		t.Fatalf("valid routes refused: %v", errs)
	}
	if errs := ValidateRoutes([]Route{{Name: "default"}}); len(errs) != 0 {
		t.Fatalf("empty path_prefix (meaning /) refused: %v", errs)
	}
	shop := func(hosts ...string) Route { return Route{Name: "shop", Hosts: hosts, PathPrefix: "/"} }
	for _, tc := range []struct {
		name   string
		routes []Route
		want   []string // each error's start, in order
	}{
		{"name_empty", []Route{{Name: ""}}, []string{"frontends[0].name: "}},
		{"name_upper_case", []Route{{Name: "Shop"}}, []string{"frontends[0].name: "}},
		{"name_too_long", []Route{{Name: strings.Repeat("a", 33)}}, []string{"frontends[0].name: "}},
		{"name_underscore", []Route{{Name: "a"}, {Name: "b_c", PathPrefix: "/b/"}}, []string{"frontends[1].name: "}},
		{"bad_name_labels_other_fields_by_index", []Route{{Name: "A", PathPrefix: "x"}}, []string{"frontends[0].name: ", "frontends[0].path_prefix: "}},
		{"name_duplicate", []Route{{Name: "a"}, {Name: "a", PathPrefix: "/b/"}}, []string{"frontends[a].name: used by frontends[0] and frontends[1]"}},
		{"prefix_no_leading_slash", []Route{{Name: "a", PathPrefix: "admin/"}}, []string{"frontends[a].path_prefix: "}},
		{"prefix_no_trailing_slash", []Route{{Name: "a", PathPrefix: "/admin"}}, []string{"frontends[a].path_prefix: "}},
		{"prefix_double_slash", []Route{{Name: "a", PathPrefix: "/a//b/"}}, []string{"frontends[a].path_prefix: "}},
		{"prefix_only_slashes", []Route{{Name: "a", PathPrefix: "//"}}, []string{"frontends[a].path_prefix: "}},
		{"prefix_query", []Route{{Name: "a", PathPrefix: "/a?b/"}}, []string{"frontends[a].path_prefix: "}},
		{"prefix_space", []Route{{Name: "a", PathPrefix: "/a b/"}}, []string{"frontends[a].path_prefix: "}},
		{"prefix_percent", []Route{{Name: "a", PathPrefix: "/a%2f/"}}, []string{"frontends[a].path_prefix: "}},
		{"host_empty", []Route{shop("")}, []string{"frontends[shop].hosts[0]: must not be empty"}},
		{"host_port", []Route{shop("shop.example.com:443")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_upper_case", []Route{shop("Shop.example.com")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_wildcard", []Route{shop("*.example.com")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_trailing_dot", []Route{shop("shop.example.com.")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_underscore", []Route{shop("shop_1.example.com")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_label_hyphen", []Route{shop("-shop.example.com")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_label_too_long", []Route{shop(strings.Repeat("a", 64) + ".example")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_too_long", []Route{shop(strings.Repeat("a.", 127) + "a")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_scheme", []Route{shop("https://shop.example.com")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_ipv6_brackets", []Route{shop("[::1]")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_ipv6_not_canonical", []Route{shop("0:0::1")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_ipv6_upper_case", []Route{shop("FE80::1")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_ipv6_zone", []Route{shop("fe80::1%eth0")}, []string{"frontends[shop].hosts[0]: "}},
		{"host_duplicate", []Route{shop("a.example", "b.example", "a.example")}, []string{"frontends[shop].hosts[2]: \"a.example\" is listed already as hosts[0]"}},
		{"same_host_same_prefix", []Route{
			{Name: "a", Hosts: []string{"x.example", "y.example"}, PathPrefix: "/app/"},
			{Name: "b", Hosts: []string{"y.example"}, PathPrefix: "/app/"},
		}, []string{"frontends[b].hosts[0]: host y.example with path_prefix /app/ is frontends[a]'s already"}},
		{"hostless_same_prefix", []Route{{Name: "a"}, {Name: "b", PathPrefix: "/"}}, []string{"frontends[b].path_prefix: / on any host is frontends[a]'s already"}},
		{"every_problem_at_once", []Route{
			{Name: "ok"},
			{Name: "Bad", Hosts: []string{"A.example"}, PathPrefix: "/x"},
			{Name: "ok", PathPrefix: "/"},
		}, []string{"frontends[1].name: ", "frontends[1].path_prefix: ", "frontends[1].hosts[0]: ", "frontends[ok].name: ", "frontends[ok].path_prefix: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := ValidateRoutes(tc.routes)
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors %q, want %d", len(errs), errs, len(tc.want))
			}
			for i, err := range errs {
				if !strings.HasPrefix(err.Error(), tc.want[i]) {
					t.Errorf("error %d = %q, want it to start %q", i, err, tc.want[i])
				}
			}
		})
	}
}

// TestValidateRoutesHostFrontendsOverlapHostless: the same prefix with and
// without hosts is no clash (the host frontend wins its host), nor are two
// frontends on one host with different prefixes, nor one prefix on two hosts.
func TestValidateRoutesHostFrontendsOverlapHostless(t *testing.T) {
	t.Parallel()
	routes := []Route{
		{Name: "any", PathPrefix: "/"},
		{Name: "shop", Hosts: []string{"shop.example"}, PathPrefix: "/"},
		{Name: "shop-admin", Hosts: []string{"shop.example"}, PathPrefix: "/admin/"},
		{Name: "other", Hosts: []string{"other.example"}, PathPrefix: "/admin/"},
	}
	if errs := ValidateRoutes(routes); len(errs) != 0 {
		t.Fatal(errs)
	}
}

// manyRoutes is n frontends: half on their own host, half sharing one host
// by prefix, plus a host-less one.
func manyRoutes(n int) []Route {
	routes := []Route{{Name: "any", PathPrefix: "/"}}
	for i := 1; i < n; i++ {
		if i%2 == 0 {
			routes = append(routes, Route{Name: fmt.Sprintf("host-%d", i), Hosts: []string{fmt.Sprintf("app%d.example.com", i)}, PathPrefix: "/"})
		} else {
			routes = append(routes, Route{Name: fmt.Sprintf("prefix-%d", i), Hosts: []string{"apps.example.com"}, PathPrefix: fmt.Sprintf("/app%d/", i)})
		}
	}
	return routes
}

// selectCases are requests over manyRoutes(100): by host, by prefix, and the fallbacks.
var selectCases = []struct{ host, path string }{
	{"app42.example.com:443", "/api/v1/orders/123?x=1"},
	{"apps.example.com", "/app77/api/v1/orders/123"},
	{"Apps.Example.com", "/app77/api/v1/orders/123"},
	{"apps.example.com", "/nothing/here"},
	{"unknown.example.com", "/api/v1/orders/123"},
	{"[::1]:8080", "/x"},
}

func TestSelectNoAllocation(t *testing.T) {
	routes := manyRoutes(100)
	sel, err := NewSelector(routes, namesOf(routes))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range selectCases {
		if n := testing.AllocsPerRun(100, func() { sel.Select(c.host, c.path) }); n != 0 {
			t.Errorf("Select(%q, %q): %v allocations", c.host, c.path, n)
		}
	}
}

func BenchmarkSelect(b *testing.B) {
	for _, n := range []int{1, 100} {
		routes := manyRoutes(n)
		sel, err := NewSelector(routes, namesOf(routes))
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range selectCases {
			b.Run(fmt.Sprintf("frontends=%d/%s%s", n, c.host, strings.ReplaceAll(c.path, "/", "_")), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					sel.Select(c.host, c.path)
				}
			})
		}
	}
}

// selectNaive is Select's definition, written plainly: the reference
// FuzzSelect holds the indexed version to.
func selectNaive(routes []Route, host, path string) (string, bool) {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	host = strings.ToLower(hostOnly(host))
	if len(host) > maxHostLen {
		host = ""
	}
	best := func(withHost bool) (string, bool) {
		name, n := "", -1
		for _, r := range routes {
			listed := false
			for _, h := range r.Hosts {
				listed = listed || h == host
			}
			if withHost != listed || (!withHost && len(r.Hosts) > 0) {
				continue
			}
			p := r.prefixOf()
			if (strings.HasPrefix(path, p) || path == strings.TrimSuffix(p, "/")) && len(p) > n {
				name, n = r.Name, len(p)
			}
		}
		return name, n >= 0
	}
	if name, ok := best(true); ok {
		return name, true
	}
	return best(false)
}

func FuzzSelect(f *testing.F) {
	for _, c := range selectCases {
		f.Add(c.host, c.path)
	}
	f.Add("shop.example.com", "/admin")
	f.Add("SHOP.example.com:1", "/admin/reports/x")
	f.Add("[::1]", "")
	routes := append(slices.Clone(testRoutes), manyRoutes(20)[1:]...) // one host-less "/" only
	sel, err := NewSelector(routes, namesOf(routes))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		got, ok := sel.Select(host, path)
		want, wantOK := selectNaive(routes, host, path)
		if got != want || ok != wantOK {
			t.Fatalf("Select(%q, %q) = %q, %v; the definition says %q, %v", host, path, got, ok, want, wantOK)
		}
	})
}
