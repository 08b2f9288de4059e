package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadFrontends: each frontend decodes over its defaults (the package
// defaults, and the top-level session section for its session), derives
// its browser endpoints from its path prefix, and takes its own
// environment variables.
func TestLoadFrontends(t *testing.T) {
	t.Parallel()
	c, err := loadConfig("testdata/frontends.yaml", env(map[string]string{
		"ENVOY_BFF_FRONTENDS_ADMIN_OIDC_CLIENT_SECRET":   "from-env",
		"ENVOY_BFF_FRONTENDS_ADMIN_OIDC_USERINFO_CLAIMS": "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	list := c.frontendList()
	if len(list) != 3 {
		t.Fatalf("%d frontends", len(list))
	}
	shop, admin, partner := list[0], list[1], list[2]
	for _, tc := range []struct {
		what, got, want string
	}{
		{"shop path_prefix", shop.PathPrefix, "/"},
		{"shop oidc.path_prefix", shop.OIDC.PathPrefix, "/bff"},
		{"shop authz.login_path", shop.Authz.LoginPath, "/bff/login"},
		{"shop cookie (global default)", shop.Session.Cookie.Name, "__Host-bff"},
		{"partner oidc.path_prefix", partner.OIDC.PathPrefix, "/partner/bff"},
		{"partner authz.login_path", partner.Authz.LoginPath, "/partner/bff/login"},
		{"partner cookie", partner.Session.Cookie.Name, "__Host-partner"},
		{"admin secret from its variable", admin.OIDC.ClientSecret, "from-env"},
		{"shop secret untouched", shop.OIDC.ClientSecret, "shop-secret"},
		{"admin default policy", string(admin.Authz.DefaultPolicy), "user"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.what, tc.got, tc.want)
		}
	}
	if shop.Session.IdleTimeout != 20*time.Minute || admin.Session.IdleTimeout != 5*time.Minute {
		t.Errorf("idle timeouts: shop %v (want the global 20m), admin %v (its own 5m)", shop.Session.IdleTimeout, admin.Session.IdleTimeout)
	}
	if !admin.OIDC.UserinfoClaims || shop.OIDC.UserinfoClaims {
		t.Errorf("userinfo_claims: admin %v (set by its variable), shop %v (default false)", admin.OIDC.UserinfoClaims, shop.OIDC.UserinfoClaims)
	}
	if len(shop.OIDC.Scopes) == 0 || shop.OIDC.ProviderTimeout == 0 {
		t.Errorf("shop's oidc lacks the package defaults: %+v", shop.OIDC)
	}
}

// TestLegacyConfigIsFrontendDefault: a config without frontends: is one
// frontend named default on every host, as before.
func TestLegacyConfigIsFrontendDefault(t *testing.T) {
	t.Parallel()
	c, err := loadConfig("testdata/valid.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	list := c.frontendList()
	if len(list) != 1 || list[0].Name != "default" || len(list[0].Hosts) != 0 || list[0].PathPrefix != "/" {
		t.Fatalf("frontends = %+v", list)
	}
	if list[0].OIDC.ClientID != "app" || list[0].Session.Cookie.Name != "__Host-bff" || list[0].Authz.LoginPath != "/bff/login" {
		t.Errorf("default frontend = %+v", list[0])
	}
}

// TestFrontendConfigErrors: every bad field is named with its frontend.
func TestFrontendConfigErrors(t *testing.T) {
	t.Parallel()
	base, err := os.ReadFile("testdata/frontends.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		edit    func(string) string
		env     map[string]string
		wantErr []string
	}{
		{
			name: "bad issuer named with its frontend",
			edit: func(s string) string {
				return strings.Replace(s, "https://login.example.org/realms/staff", "ftp://x", 1)
			},
			wantErr: []string{"frontends[admin].oidc.issuer: must be an absolute http(s) URL"},
		},
		{
			name:    "redirect URL off the derived callback path",
			edit:    func(s string) string { return strings.Replace(s, "/partner/bff/callback", "/bff/callback", 1) },
			wantErr: []string{"frontends[partner].oidc.redirect_url: path must be /partner/bff/callback"},
		},
		{
			name:    "two frontends on one host and prefix",
			edit:    func(s string) string { return strings.Replace(s, "path_prefix: /partner/", "path_prefix: /", 1) },
			wantErr: []string{"frontends[partner]", "shop.example.com"},
		},
		{
			name:    "two frontends sharing a cookie on one host",
			edit:    func(s string) string { return strings.Replace(s, "__Host-partner", "__Host-bff", 1) },
			wantErr: []string{"frontends[partner].session.cookie.name: frontends[shop] uses cookie __Host-bff too"},
		},
		{
			name:    "a login cookie clashing with a session cookie",
			edit:    func(s string) string { return strings.Replace(s, "__Host-partner", "__Host-bff-login", 1) },
			wantErr: []string{"frontends[partner].session.cookie.name: frontends[shop] uses cookie __Host-bff-login too"},
		},
		{
			name: "unknown key inside a frontend",
			edit: func(s string) string {
				return strings.Replace(s, "client_id: partner", "client_id: partner\n      colour: blue", 1)
			},
			wantErr: []string{"frontends[partner] (the item at line 25 of the file)", "colour"},
		},
		{
			name: "a rule naming an undefined token profile",
			edit: func(s string) string {
				return strings.Replace(s, "- { prefix: /api/, policy: user }", "- { prefix: /api/, policy: user, token: orders }", 1)
			},
			wantErr: []string{`frontends[shop].tokens: "orders" is named by an authz rule's token but not defined`},
		},
		{
			name: "a bad token profile named with its frontend",
			edit: func(s string) string {
				return strings.Replace(s, "  - name: admin\n", "  - name: admin\n    tokens: { orders: { type: exchange } }\n", 1)
			},
			wantErr: []string{`frontends[admin].tokens."orders": an exchange names the API`},
		},
		{
			name:    "top-level tokens next to frontends",
			edit:    func(s string) string { return s + "tokens: {}\n" },
			wantErr: []string{"tokens: not allowed with frontends"},
		},
		{
			name:    "bad frontend name",
			edit:    func(s string) string { return strings.Replace(s, "name: admin", "name: Admin_Console", 1) },
			wantErr: []string{"frontends[1].name: must be 1-32 characters"},
		},
		{
			name:    "top-level oidc next to frontends",
			edit:    func(s string) string { return s + "oidc:\n  client_id: x\n" },
			wantErr: []string{"oidc: not allowed with frontends"},
		},
		{
			name:    "top-level oidc variable next to frontends",
			edit:    func(s string) string { return s },
			env:     map[string]string{"ENVOY_BFF_OIDC_CLIENT_SECRET": "x"},
			wantErr: []string{"oidc.client_secret (from ENVOY_BFF_OIDC_CLIENT_SECRET): not allowed with frontends: use ENVOY_BFF_FRONTENDS_<NAME>_"},
		},
		{
			name:    "bad idle timeout in a frontend's session",
			edit:    func(s string) string { return strings.Replace(s, "idle_timeout: 5m", "idle_timeout: -5m", 1) },
			wantErr: []string{"frontends[admin].session.idle_timeout"},
		},
		{
			name:    "bad value in a frontend's variable",
			edit:    func(s string) string { return s },
			env:     map[string]string{"ENVOY_BFF_FRONTENDS_SHOP_OIDC_PROVIDER_TIMEOUT": "soon"},
			wantErr: []string{"frontends[shop].oidc.provider_timeout (from ENVOY_BFF_FRONTENDS_SHOP_OIDC_PROVIDER_TIMEOUT)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.edit(string(base))), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadConfig(path, env(tc.env))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q:\n%v", s, err)
				}
			}
			for _, secret := range []string{"shop-secret", "admin-secret", "partner-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error echoes a client secret: %v", err)
				}
			}
		})
	}
}

// TestLoadTokenProfiles: a single-app config's tokens: section, a client
// profile serving a client rule (merged into the client tokens), and a
// rule naming an exchange profile.
func TestLoadTokenProfiles(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(raw), "    - prefix: /api/\n      policy: user\n",
		"    - prefix: /api/\n      policy: user\n      token: orders\n    - { prefix: /partner/, policy: client, client_token: partner }\n", 1) +
		"tokens:\n  orders: { type: exchange, audience: orders-api, scopes: [orders.read] }\n  partner: { type: client, audience: partner-api }\n"
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	f := c.frontendList()[0]
	if f.Tokens["orders"].Audience != "orders-api" || f.Authz.PathRules[0].Token != "orders" {
		t.Fatalf("tokens %+v, rules %+v", f.Tokens, f.Authz.PathRules)
	}
	if _, ok := withClientProfiles(f.OIDC, f.Tokens).ClientTokens["partner"]; !ok {
		t.Fatal("the client profile is not among the client tokens")
	}
}
