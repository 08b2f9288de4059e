package authz

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/session"
)

// testFrontend is one frontend of a multi-frontend Server under test, with
// its own memory store holding one valid session.
type testFrontend struct {
	route  oidcflow.Route
	cookie session.CookieConfig
	store  *countingStore
	id     session.ID
}

// frontendsEnv is a Server over several frontends, each with its own store.
type frontendsEnv struct {
	srv  *Server
	fe   map[string]*testFrontend
	logs *bytes.Buffer
	reg  *prometheus.Registry
}

// threeFrontends: shop and admin on their own hosts, both naming their
// cookie __Host-bff (they never share a host, so a browser keeps them
// apart); docs on any host under /docs/ with its own cookie.
func threeFrontends() []*testFrontend {
	return []*testFrontend{
		{route: oidcflow.Route{Name: "shop", Hosts: []string{"shop.example.com"}, PathPrefix: "/"}, cookie: session.CookieConfig{Name: "__Host-bff"}},
		{route: oidcflow.Route{Name: "admin", Hosts: []string{"admin.example.com"}, PathPrefix: "/"}, cookie: session.CookieConfig{Name: "__Host-bff"}},
		{route: oidcflow.Route{Name: "docs", PathPrefix: "/docs/"}, cookie: session.CookieConfig{Name: "__Host-docs"}},
	}
}

func newFrontendsEnv(t testing.TB, list []*testFrontend) *frontendsEnv {
	t.Helper()
	e := &frontendsEnv{fe: map[string]*testFrontend{}, logs: &bytes.Buffer{}, reg: prometheus.NewRegistry()}
	metrics, err := NewMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	var frontends []Frontend
	for i, f := range list {
		mem, creator := newMemoryStore(t)
		f.store = &countingStore{inner: mem}
		f.id = mustID(t, byte(10+i))
		if err := creator.Create(context.Background(), f.id, validRecord()); err != nil {
			t.Fatal(err)
		}
		e.fe[f.route.Name] = f
		frontends = append(frontends, f.frontend())
	}
	srv, err := NewFrontendServer(Deps{
		Antiforgery: oidcflow.AntiforgeryConfig{Header: "X-CSRF", Value: "1"},
		Logger:      newTestLogger(e.logs),
		Now:         func() time.Time { return t0 },
		Metrics:     metrics,
	}, frontends)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	return e
}

func (f *testFrontend) frontend() Frontend {
	return Frontend{Route: f.route, Config: testConfig(), Sessions: f.store, Refresher: &fakeRefresher{}, ClientTokens: &fakeClientTokens{}, Cookie: f.cookie}
}

// at is a CheckRequest for host and target with the given cookie header.
func at(host, target, cookie string, ext map[string]string) *authv3.CheckRequest {
	h := map[string]string{csrfHeader: "1", "accept": "application/json"}
	if cookie != "" {
		h["cookie"] = cookie
	}
	in := creq("GET", target, h, ext)
	in.Attributes.Request.Http.Host = host
	return in
}

func (e *frontendsEnv) check(t testing.TB, in *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := e.srv.Check(context.Background(), in)
	if err != nil || resp == nil {
		t.Fatalf("Check = %v, %v", resp, err)
	}
	return resp
}

// pair is the cookie pair carrying f's valid session under name.
func (f *testFrontend) pair(name string) string { return name + "=" + f.id.String() }

// TestFrontendSelection: the route's bff.frontend wins, then the host, then
// the longest path prefix among host-less frontends; a protected route no
// frontend takes is 403 frontend_unknown (T73), a none route passes.
func TestFrontendSelection(t *testing.T) {
	t.Parallel()
	e := newFrontendsEnv(t, threeFrontends())
	shop, admin, docs := e.fe["shop"], e.fe["admin"], e.fe["docs"]
	for _, tc := range []struct {
		name, host, target, cookie string
		ext                        map[string]string
		status                     int
		code                       string
		store                      *countingStore // the store that must have been read
	}{
		{"host picks shop", "shop.example.com", "/api/x", shop.pair("__Host-bff"), nil, 200, "", shop.store},
		{"host with port and case", "ADMIN.example.com:8443", "/api/x", admin.pair("__Host-bff"), nil, 200, "", admin.store},
		{"host-less by prefix", "anything.example.com", "/docs/api/x", docs.pair("__Host-docs"), map[string]string{extPolicy: "user"}, 200, "", docs.store},
		{"extension beats host", "shop.example.com", "/api/x", admin.pair("__Host-bff"), map[string]string{extFrontend: "admin", extPolicy: "user"}, 200, "", admin.store},
		{"extension naming no frontend", "shop.example.com", "/api/x", shop.pair("__Host-bff"), map[string]string{extFrontend: "nope", extPolicy: "user"}, 403, "frontend_unknown", nil},
		{"unknown host, protected", "evil.example.com", "/api/x", shop.pair("__Host-bff"), map[string]string{extPolicy: "user"}, 403, "frontend_unknown", nil},
		{"unknown host, no policy from any frontend", "evil.example.com", "/api/x", shop.pair("__Host-bff"), nil, 403, "frontend_unknown", nil},
		{"unknown host, none route", "evil.example.com", "/", shop.pair("__Host-bff"), map[string]string{extPolicy: "none"}, 200, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[*countingStore]int64{}
			for _, f := range e.fe {
				before[f.store] = f.store.gets.Load()
			}
			resp := e.check(t, at(tc.host, tc.target, tc.cookie, tc.ext))
			if got := status(resp); got != tc.status || errorCode(t, resp) != tc.code {
				t.Fatalf("status %d %q, want %d %q", got, errorCode(t, resp), tc.status, tc.code)
			}
			for _, f := range e.fe {
				read := f.store.gets.Load() != before[f.store]
				if read != (f.store == tc.store) {
					t.Errorf("frontend %s's store read = %v", f.route.Name, read)
				}
			}
			if tc.status == 200 {
				if cookie, _ := upstreamHeader(resp, "cookie"); strings.Contains(cookie, "__Host-") {
					t.Errorf("upstream cookie %q still carries a session cookie", cookie)
				}
				if tc.store == nil {
					if v, n := upstreamHeader(resp, "authorization"); n != 0 {
						t.Errorf("a route no frontend took got authorization %q", v)
					}
				}
			}
		})
	}
}

// TestFrontendIsolation is T72 at Check: a session of one frontend is
// nobody else's, however its cookie arrives, and the other frontend's
// upstream receives nothing of it.
func TestFrontendIsolation(t *testing.T) {
	t.Parallel()
	list := threeFrontends()
	// A fourth frontend shares shop's host under /beta/ with its own cookie.
	list = append(list, &testFrontend{route: oidcflow.Route{Name: "beta", Hosts: []string{"shop.example.com"}, PathPrefix: "/beta/"}, cookie: session.CookieConfig{Name: "__Host-beta"}})
	e := newFrontendsEnv(t, list)
	shop, admin, docs, beta := e.fe["shop"], e.fe["admin"], e.fe["docs"], e.fe["beta"]
	for _, tc := range []struct {
		name, host, target, cookie string
	}{
		{"shop's cookie on admin's host (same name)", "admin.example.com", "/api/x", shop.pair("__Host-bff")},
		{"shop's value copied under docs' name", "shop.example.com", "/docs/api/x", shop.pair("__Host-docs")},
		{"docs' value under shop's name", "shop.example.com", "/api/x", docs.pair("__Host-bff")},
		{"shop's cookie on beta's prefix, same host", "shop.example.com", "/beta/api/x", shop.pair("__Host-bff")},
		{"shop's value under beta's name", "shop.example.com", "/beta/api/x", shop.pair("__Host-beta")},
		{"admin's value on shop", "shop.example.com", "/api/x", admin.pair("__Host-bff")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.check(t, at(tc.host, tc.target, tc.cookie, map[string]string{extPolicy: "user"}))
			if status(resp) != 401 || errorCode(t, resp) != "unauthenticated" {
				t.Fatalf("status %d %q, want 401 unauthenticated", status(resp), errorCode(t, resp))
			}
			if resp.GetOkResponse() != nil {
				t.Fatal("passed upstream")
			}
		})
	}

	t.Run("both cookies on beta's route: beta's session, shop's cookie stripped", func(t *testing.T) {
		resp := e.check(t, at("shop.example.com", "/beta/api/x", "theme=dark; "+shop.pair("__Host-bff")+"; "+beta.pair("__Host-beta")+"; __Host-bff-login=x", map[string]string{extPolicy: "user"}))
		if status(resp) != 200 {
			t.Fatalf("status %d %q", status(resp), errorCode(t, resp))
		}
		cookie, _ := upstreamHeader(resp, "cookie")
		if cookie != "theme=dark" {
			t.Errorf("upstream cookie %q, want only theme=dark: no frontend's session or login cookie on a shared host", cookie)
		}
		if strings.Contains(cookie, shop.id.String()) || strings.Contains(cookie, beta.id.String()) {
			t.Error("a session ID reached upstream")
		}
	})
}

// TestSetFrontends: a reload swaps every frontend at once; a removed
// frontend's routes are frontend_unknown; a bad set changes nothing (T73).
func TestSetFrontends(t *testing.T) {
	t.Parallel()
	e := newFrontendsEnv(t, threeFrontends())
	shop, admin := e.fe["shop"], e.fe["admin"]
	adminReq := at("admin.example.com", "/api/x", admin.pair("__Host-bff"), nil)

	bad := []Frontend{shop.frontend(), shop.frontend()} // two frontends on one host and prefix
	if err := e.srv.SetFrontends(bad); err == nil {
		t.Fatal("SetFrontends accepted two frontends with the same host and prefix")
	}
	if err := e.srv.SetFrontends(nil); err == nil {
		t.Fatal("SetFrontends accepted no frontend")
	}
	if got := status(e.check(t, adminReq)); got != 200 {
		t.Fatalf("after a refused reload admin answers %d, want 200 (unchanged)", got)
	}
	if err := e.srv.SetFrontends([]Frontend{shop.frontend()}); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Frontends(); fmt.Sprint(got) != "[shop]" {
		t.Errorf("Frontends() = %v", got)
	}
	resp := e.check(t, adminReq)
	if status(resp) != 403 || errorCode(t, resp) != "frontend_unknown" {
		t.Fatalf("removed frontend: %d %q, want 403 frontend_unknown", status(resp), errorCode(t, resp))
	}
	if got := status(e.check(t, at("shop.example.com", "/api/x", shop.pair("__Host-bff"), nil))); got != 200 {
		t.Fatalf("kept frontend answers %d", got)
	}
}

// TestFrontendLabels: every check is counted and logged under its frontend.
func TestFrontendLabels(t *testing.T) {
	t.Parallel()
	e := newFrontendsEnv(t, threeFrontends())
	e.check(t, at("shop.example.com", "/api/x", e.fe["shop"].pair("__Host-bff"), nil))
	e.check(t, at("admin.example.com", "/api/x", "", nil))
	e.check(t, at("evil.example.com", "/api/x", "", map[string]string{extPolicy: "user"}))
	for _, tc := range []struct{ frontend, answer string }{
		{"shop", "ok"}, {"admin", "unauthenticated"}, {"unknown", "frontend_unknown"},
	} {
		if got := testutil.ToFloat64(e.srv.metrics.checks.WithLabelValues(tc.frontend, "user", tc.answer)); got != 1 {
			t.Errorf("checks{frontend=%s,answer=%s} = %v, want 1", tc.frontend, tc.answer, got)
		}
	}
	logs := e.logs.String()
	for _, want := range []string{`"frontend":"admin"`, `"frontend":"unknown"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// TestHundredFrontendsAllocateNoMore: selecting among 100 frontends adds no
// allocation to the valid-session path.
func TestHundredFrontendsAllocateNoMore(t *testing.T) {
	one, oneReq := frontendsOf(t, 1)
	many, manyReq := frontendsOf(t, 100)
	measure := func(srv *Server, in *authv3.CheckRequest) float64 { return leastAllocsPerCheck(t, srv, in) }
	if a, b := measure(one.srv, oneReq), measure(many.srv, manyReq); b > a {
		t.Errorf("100 frontends: %v allocations per Check, one frontend: %v", b, a)
	}
}
