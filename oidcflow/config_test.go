package oidcflow

import (
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Issuer = "https://idp.example.com"
	c.ClientID = "app"
	c.ClientSecret = "s3cret-value"
	c.RedirectURL = "https://app.example.com/bff/callback"
	return c
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr []string
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "valid_public_client_on_purpose_http_localhost", mutate: func(c *Config) {
			c.ClientSecret = ""
			c.ClientAuth = ClientAuthNone
			c.Issuer = "http://127.0.0.1:8080/realms/x"
			c.RedirectURL = "http://127.0.0.1:10000/bff/callback"
			c.PostLogoutRedirectURL = "http://127.0.0.1:10000/"
		}},
		{name: "valid_other_prefix", mutate: func(c *Config) {
			c.PathPrefix = "/auth/bff"
			c.RedirectURL = "https://app.example.com/auth/bff/callback"
		}},
		{name: "every_bad_field_at_once", mutate: func(c *Config) { *c = Config{} }, wantErr: []string{
			"issuer: required", "client_id: required", "redirect_url: required", "scopes: must include openid",
			"path_prefix: must be", "provider_timeout: must be between",
		}},
		{name: "issuer_not_url", mutate: func(c *Config) { c.Issuer = "idp.example.com" }, wantErr: []string{"issuer: must be an absolute http(s) URL"}},
		{name: "issuer_query", mutate: func(c *Config) { c.Issuer = "https://idp.example.com?x=1" }, wantErr: []string{"issuer: must be"}},
		{name: "redirect_relative", mutate: func(c *Config) { c.RedirectURL = "/bff/callback" }, wantErr: []string{"redirect_url: must be an absolute http(s) URL"}},
		{name: "redirect_javascript", mutate: func(c *Config) { c.RedirectURL = "javascript:alert(1)" }, wantErr: []string{"redirect_url: must be an absolute http(s) URL"}},
		{name: "redirect_wrong_path", mutate: func(c *Config) { c.RedirectURL = "https://app.example.com/cb" }, wantErr: []string{"redirect_url: path must be /bff/callback"}},
		{name: "post_logout_relative", mutate: func(c *Config) { c.PostLogoutRedirectURL = "/" }, wantErr: []string{"post_logout_redirect_url: must be an absolute http(s) URL"}},
		{name: "prefix_trailing_slash", mutate: func(c *Config) { c.PathPrefix = "/bff/" }, wantErr: []string{"path_prefix: must be"}},
		{name: "scope_with_space", mutate: func(c *Config) { c.Scopes = []string{"openid", "a b"} }, wantErr: []string{"scopes[1]: must be"}},
		{name: "negative_lead", mutate: func(c *Config) { c.RefreshLeadTime = -time.Second }, wantErr: []string{"refresh_lead_time: must be between"}},
		{name: "valid_post", mutate: func(c *Config) { c.ClientAuth = ClientAuthPost }},
		{name: "valid_dpop", mutate: func(c *Config) { c.DPoP, c.DPoPAlg = true, DPoPAlgEdDSA }},
		{name: "dpop_alg_unknown", mutate: func(c *Config) { c.DPoP, c.DPoPAlg = true, "RS256" }, wantErr: []string{`dpop_alg: must be ES256 or EdDSA, got "RS256"`}},
		{name: "dpop_with_userinfo_refused", mutate: func(c *Config) { c.DPoP, c.UserinfoClaims = true, true }, wantErr: []string{"userinfo_claims: not supported together with dpop: true"}},
		{name: "valid_basic", mutate: func(c *Config) { c.ClientAuth = ClientAuthBasic }},
		// A BFF is a confidential client: an empty secret is no longer a
		// silent public client.
		{name: "empty_secret_refused", mutate: func(c *Config) { c.ClientSecret = "" }, wantErr: []string{"client_secret: required: envoy-bff is a confidential client"}},
		{name: "empty_secret_with_basic_refused", mutate: func(c *Config) { c.ClientSecret, c.ClientAuth = "", ClientAuthBasic }, wantErr: []string{"client_secret: required"}},
		{name: "none_with_secret_refused", mutate: func(c *Config) { c.ClientAuth = ClientAuthNone }, wantErr: []string{"client_secret: must be empty with client_auth: none"}},
		{name: "unknown_client_auth", mutate: func(c *Config) { c.ClientAuth = "private_key_jwt_typo" }, wantErr: []string{`client_auth: must be one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth or none, got "private_key_jwt_typo"`}},
		{name: "public_client_with_client_tokens", mutate: func(c *Config) {
			c.ClientSecret, c.ClientAuth = "", ClientAuthNone
			c.ClientTokens = map[string]ClientTokenConfig{"default": {}}
		}, wantErr: []string{`client_tokens["default"]: needs client authentication`}},
		{name: "client_id_space", mutate: func(c *Config) { c.ClientID = "a b" }, wantErr: []string{"client_id: must not contain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
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
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Error("error repeats the client secret")
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	if strings.Join(c.Scopes, " ") != "openid profile email offline_access" || c.PathPrefix != "/bff" ||
		c.ProviderTimeout != 5*time.Second || c.RefreshLeadTime != 60*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
}
