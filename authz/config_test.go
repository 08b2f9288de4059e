package authz

import (
	"strings"
	"testing"
)

func TestDefaultConfigIsValidAndFailsClosed(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DefaultPolicy != PolicyUser || c.LoginPath != "/bff/login" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		mutate  func(c *Config)
		wantErr []string // every substring; none means valid
	}{
		{name: "rules of every kind", mutate: func(c *Config) {
			c.PathRules = []PathRule{{Exact: "/", Policy: PolicyNone}, {Prefix: "/api/", Policy: PolicyUser, Redirect: true}, {Prefix: "/pub/", Policy: PolicyUserOrNone}}
			c.IdentityHeaders = map[string]string{"X-User-Sub": "sub", "x-user-email": "email"}
		}},
		{name: "unknown default policy", mutate: func(c *Config) { c.DefaultPolicy = "maybe" }, wantErr: []string{`default_policy: unknown policy "maybe"`}},
		{name: "empty default policy", mutate: func(c *Config) { c.DefaultPolicy = "" }, wantErr: []string{`default_policy: unknown policy ""`}},
		{name: "rule policy", mutate: func(c *Config) {
			c.PathRules = []PathRule{{Exact: "/", Policy: PolicyNone}, {Prefix: "/a/", Policy: PolicyUser}, {Prefix: "/b/", Policy: "foo"}}
		}, wantErr: []string{`path_rules[2].policy: unknown policy "foo"`}},
		{name: "neither prefix nor exact", mutate: func(c *Config) { c.PathRules = []PathRule{{Policy: PolicyUser}} }, wantErr: []string{"path_rules[0]: set one of prefix or exact"}},
		{name: "both prefix and exact", mutate: func(c *Config) { c.PathRules = []PathRule{{Prefix: "/a/", Exact: "/a", Policy: PolicyUser}} }, wantErr: []string{"path_rules[0]: set only one of prefix or exact"}},
		{name: "rule not normalised", mutate: func(c *Config) {
			c.PathRules = []PathRule{{Prefix: "api/", Policy: PolicyUser}, {Exact: "/a/../b", Policy: PolicyNone}, {Prefix: "/x%2Fy", Policy: PolicyNone}, {Exact: "/q?x=1", Policy: PolicyNone}}
		}, wantErr: []string{"path_rules[0].prefix: must be a normalised path", "path_rules[1].exact: must be a normalised path", "path_rules[2].prefix", "path_rules[3].exact"}},
		{name: "duplicate rule", mutate: func(c *Config) {
			c.PathRules = []PathRule{{Exact: "/", Policy: PolicyNone}, {Exact: "/", Policy: PolicyUser}}
		}, wantErr: []string{"path_rules[1].exact: duplicate of path_rules[0]"}},
		{name: "identity headers", mutate: func(c *Config) {
			c.IdentityHeaders = map[string]string{"Authorization": "sub", "x user": "sub", "x_user": "sub", "x-empty": " ", "X-Dup": "a", "x-dup": "b", "x-envoy-foo": "sub"}
		}, wantErr: []string{`identity_headers["Authorization"]: reserved header`, `identity_headers["x user"]: not a valid header name`,
			`identity_headers["x_user"]: use dashes`, `identity_headers["x-empty"]: claim name is empty`, `identity_headers["x-dup"]: same header as "X-Dup"`,
			`identity_headers["x-envoy-foo"]: reserved header`}},
		{name: "login path", mutate: func(c *Config) { c.LoginPath = "https://evil.example/login" }, wantErr: []string{"login_path: must be a local path"}},
		{name: "login path protocol-relative", mutate: func(c *Config) { c.LoginPath = "//evil.example/login" }, wantErr: []string{"login_path"}},
		{name: "client token on a user rule", mutate: func(c *Config) {
			c.PathRules = []PathRule{{Prefix: "/api/", Policy: PolicyUser, ClientToken: "default"}}
		}, wantErr: []string{"path_rules[0].client_token: only the client and user_or_client policies send a client token"}},
		{name: "client token bad name", mutate: func(c *Config) {
			c.PathRules = []PathRule{{Prefix: "/api/", Policy: PolicyClient, ClientToken: "Bad Name"}}
		}, wantErr: []string{"path_rules[0].client_token: must be 1-64 characters"}},
		{name: "realtime on user and user_or_none, listed origins", mutate: func(c *Config) {
			c.PathRules = []PathRule{{Prefix: "/api/ws", Policy: PolicyUser, Realtime: true}, {Prefix: "/pub/", Policy: PolicyUserOrNone, Realtime: true}}
			c.AllowedOrigins = []string{"https://app.example.com", "HTTP://LOCALHOST:8080"}
		}},
		{name: "realtime on a route without a session", mutate: func(c *Config) {
			c.PathRules = []PathRule{{Prefix: "/a/", Policy: PolicyNone, Realtime: true}, {Prefix: "/b/", Policy: PolicyClient, Realtime: true}, {Prefix: "/c/", Policy: PolicyUserOrClient, Realtime: true}}
		}, wantErr: []string{"path_rules[0].realtime: only user and user_or_none", "path_rules[1].realtime", "path_rules[2].realtime"}},
		{name: "bad allowed origins", mutate: func(c *Config) {
			c.AllowedOrigins = []string{"https://ok.example", "https://*.example.com", "https://app.example.com/", "ftp://x.example", "https://u@x.example", "https://x.example:99999", "https://OK.example:443"}
		}, wantErr: []string{"allowed_origins[1]: must be an origin", "allowed_origins[2]: must be scheme://host[:port] only", "allowed_origins[3]: scheme must be http or https",
			"allowed_origins[4]", "allowed_origins[5]: port must be 1-65535", `allowed_origins[6]: duplicate origin "https://ok.example"`}},
		{name: "every bad field at once", mutate: func(c *Config) {
			c.DefaultPolicy = "x"
			c.LoginPath = ""
			c.PathRules = []PathRule{{Prefix: "/a/", Policy: "y"}}
		}, wantErr: []string{"default_policy", "login_path", "path_rules[0].policy"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q:\n%v", s, err)
				}
			}
		})
	}
}

func TestNewServerRejectsBadInput(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.DefaultPolicy = "nope"
	_, err := NewServer(cfg, Deps{})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, s := range []string{"default_policy", "deps.Sessions", "deps.Now", "deps.Cookie.Name", "deps.Antiforgery"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}
}

func TestRouteTable(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	c.PathRules = []PathRule{
		{Prefix: "/api/", Policy: PolicyUser},
		{Prefix: "/api/public/", Policy: PolicyUserOrNone},
		{Exact: "/api/public/secret", Policy: PolicyUser, Redirect: true},
		{Exact: "/", Policy: PolicyNone},
		{Prefix: "/partner/", Policy: PolicyClient, ClientToken: "billing"},
		{Prefix: "/catalog/", Policy: PolicyUserOrClient},
	}
	rt := newRouteTable(c)
	const dflt = defaultClientToken
	cases := []struct {
		path string
		want route
	}{
		{"/", route{policy: PolicyNone, clientToken: dflt}},
		{"/index.html", route{policy: PolicyUser, clientToken: dflt}}, // exact "/" is not a prefix
		{"/api/x", route{policy: PolicyUser, clientToken: dflt}},
		{"/api/public/x", route{policy: PolicyUserOrNone, clientToken: dflt}},
		{"/api/public/secret", route{policy: PolicyUser, redirect: true, clientToken: dflt}},
		{"/api/public/secret/x", route{policy: PolicyUserOrNone, clientToken: dflt}},
		{"/apix", route{policy: PolicyUser, clientToken: dflt}},
		{"/partner/x", route{policy: PolicyClient, clientToken: "billing"}},
		{"/catalog/x", route{policy: PolicyUserOrClient, clientToken: dflt}},
	}
	for _, tc := range cases {
		if got := rt.match(tc.path); got != tc.want {
			t.Errorf("%s → %+v, want %+v", tc.path, got, tc.want)
		}
	}
}
