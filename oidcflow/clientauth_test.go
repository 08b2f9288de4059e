package oidcflow

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

func TestChooseClientAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		configured string
		methods    []string
		want       string
		style      oauth2.AuthStyle
	}{
		{"nothing_listed_is_basic", "", nil, ClientAuthBasic, oauth2.AuthStyleInHeader},
		{"basic_listed", "", []string{"client_secret_post", "client_secret_basic"}, ClientAuthBasic, oauth2.AuthStyleInHeader},
		{"only_post_listed", "", []string{"client_secret_post", "private_key_jwt"}, ClientAuthPost, oauth2.AuthStyleInParams},
		{"neither_listed_tries_basic", "", []string{"private_key_jwt"}, ClientAuthBasic, oauth2.AuthStyleInHeader},
		{"configured_post_wins", ClientAuthPost, []string{"client_secret_basic"}, ClientAuthPost, oauth2.AuthStyleInParams},
		{"configured_none", ClientAuthNone, []string{"client_secret_basic"}, ClientAuthNone, oauth2.AuthStyleInParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := chooseClientAuth(tc.configured, tc.methods)
			if got != tc.want || authStyle(got) != tc.style {
				t.Errorf("chooseClientAuth = %q (style %v), want %q (%v)", got, authStyle(got), tc.want, tc.style)
			}
		})
	}
}

// TestClientAuthAtEveryEndpoint: the configured method is what the token
// endpoint (code exchange) and the revocation endpoint (logout) both see,
// and nothing else: no secret in the form under basic, no Authorization
// header under post, neither as a public client.
func TestClientAuthAtEveryEndpoint(t *testing.T) {
	t.Parallel()
	for _, method := range []string{ClientAuthBasic, ClientAuthPost, ClientAuthNone} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			seen := map[string]string{} // endpoint → how the client authenticated
			var e *env
			record := func(path string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if err := r.ParseForm(); err != nil {
						t.Error(err)
					}
					how := "none"
					_, _, basic := r.BasicAuth()
					switch {
					case basic && r.PostForm.Has("client_secret"):
						how = "both"
					case basic:
						how = ClientAuthBasic
					case r.PostForm.Has("client_secret"):
						how = ClientAuthPost
					}
					mu.Lock()
					seen[path] = how
					mu.Unlock()
					e.provider.Handler().ServeHTTP(w, r)
				}
			}
			e = newEnv(t,
				withProvider(func(c *oidctest.ProviderConfig) {
					if method == ClientAuthNone {
						c.Clients[0].Secret = ""
					}
				}),
				withConfig(func(c *Config) {
					c.ClientAuth = method
					if method == ClientAuthNone {
						c.ClientSecret = ""
					}
				}))
			e.hook(oidctest.PathToken, record(oidctest.PathToken))
			e.hook(oidctest.PathRevoke, record(oidctest.PathRevoke))
			b := e.browser()
			if r := b.login("/"); r.Status != http.StatusFound {
				t.Fatalf("login: %d %s", r.Status, r.Body)
			}
			logout := b.api("/bff/user").json(t)["logoutUrl"].(string)
			if r := b.get(logout); r.Status != http.StatusFound {
				t.Fatalf("logout: %d %s", r.Status, r.Body)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, path := range []string{oidctest.PathToken, oidctest.PathRevoke} {
				if seen[path] != method {
					t.Errorf("%s saw client authentication %q, want %q", path, seen[path], method)
				}
			}
			if got := e.provider.Stats().Revocations; got != 1 {
				t.Errorf("the provider accepted %d revocations, want 1", got)
			}
			if strings.Contains(e.logs.String(), testSecret) {
				t.Error("the client secret is in the log")
			}
		})
	}
}
