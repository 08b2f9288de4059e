package authz

import (
	"cmp"
	"slices"
	"strings"
)

// route is what a path rule decides.
type route struct {
	policy      Policy
	redirect    bool
	clientToken string       // for client and user_or_client
	require     *requirement // nil: a session is enough
	profile     string       // the token profile; "": the session's own token
	realtime    bool         // WebSocket and EventSource may pass on the origin rule
}

// routeTable matches normalised paths against the path rules: exact first,
// then the longest prefix, then the default. Built once, read-only after.
type routeTable struct {
	exact    map[string]route
	prefixes []prefixRoute // longest first
	fallback route
}

type prefixRoute struct {
	prefix string
	route  route
}

func newRouteTable(c Config) routeTable {
	t := routeTable{exact: map[string]route{}, fallback: route{policy: c.DefaultPolicy, clientToken: defaultClientToken}}
	for _, r := range c.PathRules {
		rt := route{policy: r.Policy, redirect: r.Redirect, clientToken: cmp.Or(r.ClientToken, defaultClientToken)}
		rt.require = r.Require.compile()
		rt.profile = r.Token
		rt.realtime = r.Realtime
		if r.Exact != "" {
			t.exact[r.Exact] = rt
			continue
		}
		t.prefixes = append(t.prefixes, prefixRoute{prefix: r.Prefix, route: rt})
	}
	slices.SortStableFunc(t.prefixes, func(a, b prefixRoute) int {
		return cmp.Compare(len(b.prefix), len(a.prefix))
	})
	return t
}

func (t *routeTable) match(path string) route {
	if r, ok := t.exact[path]; ok {
		return r
	}
	for _, p := range t.prefixes {
		if strings.HasPrefix(path, p.prefix) {
			return p.route
		}
	}
	return t.fallback
}
