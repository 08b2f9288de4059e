package oidcflow

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// withClientTokens configures two client tokens: the default one for the
// sample API, and one naming another audience.
func withClientTokens() envOption {
	return withConfig(func(c *Config) {
		c.ClientTokens = map[string]ClientTokenConfig{
			DefaultClientToken: {Scopes: []string{"api.read"}},
			"billing":          {Audience: "billing-api", Scopes: []string{"billing"}},
		}
	})
}

// clientTokens builds a ClientTokens over the env's store and provider.
func (e *env) clientTokens() *ClientTokens {
	e.t.Helper()
	return e.clientTokensWith(nil)
}

// clientTokensWith is clientTokens with deps edited by f (when set).
func (e *env) clientTokensWith(f func(*Deps)) *ClientTokens {
	e.t.Helper()
	deps := Deps{Store: e.store, Provider: e.h.Provider(), Now: e.clock.Now}
	if f != nil {
		f(&deps)
	}
	c, err := NewClientTokens(e.cfg, deps)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// claims decodes a JWT's payload without verifying it.
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestClientTokens(t *testing.T) {
	t.Parallel()

	t.Run("fetches_once_and_serves_from_memory", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withClientTokens())
		ct := e.clientTokens()
		first, err := ct.Token(t.Context(), DefaultClientToken)
		if err != nil || first == "" {
			t.Fatalf("first token: %v", err)
		}
		gets := e.store.gets.Load()
		for range 10 {
			if tok, err := ct.Token(t.Context(), DefaultClientToken); err != nil || tok != first {
				t.Fatalf("repeat: %v", err)
			}
		}
		if n := e.provider.Stats().ClientCredentialsGrants; n != 1 {
			t.Fatalf("%d client credentials grants, want 1", n)
		}
		if e.store.gets.Load() != gets {
			t.Fatal("a token still far from expiry was read from the store again")
		}
		c := claims(t, first)
		if c["client_id"] != testClientID || c["scope"] != "api.read" {
			t.Fatalf("token claims %v", c)
		}
	})

	t.Run("audience_and_scopes_per_name", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withClientTokens())
		tok, err := e.clientTokens().Token(t.Context(), "billing")
		if err != nil {
			t.Fatal(err)
		}
		if c := claims(t, tok); c["aud"] != "billing-api" || c["scope"] != "billing" {
			t.Fatalf("billing token claims %v", c)
		}
	})

	t.Run("unknown_name", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withClientTokens())
		if _, err := e.clientTokens().Token(t.Context(), "nope"); !errors.Is(err, ErrUnknownClientToken) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("replicas_share_one_token_and_one_renewal", func(t *testing.T) {
		t.Parallel()
		e, rr := newRedisEnv(t, 0, withClientTokens())
		replicas := []*ClientTokens{e.clientTokens()}
		for range 2 {
			ct, err := NewClientTokens(e.cfg, rr.deps(t, e))
			if err != nil {
				t.Fatal(err)
			}
			replicas = append(replicas, ct)
		}
		first, err := replicas[0].Token(t.Context(), DefaultClientToken)
		if err != nil {
			t.Fatal(err)
		}
		for i, ct := range replicas[1:] {
			if tok, err := ct.Token(t.Context(), DefaultClientToken); err != nil || tok != first {
				t.Fatalf("replica %d did not use the shared token: %v", i+2, err)
			}
		}
		e.clock.Advance(4*time.Minute + 30*time.Second) // due on every replica at once
		var wg sync.WaitGroup
		toks := make([]string, 30)
		for i := range toks {
			wg.Go(func() { toks[i], _ = replicas[i%len(replicas)].Token(t.Context(), DefaultClientToken) })
		}
		wg.Wait()
		if n := e.provider.Stats().ClientCredentialsGrants; n != 2 {
			t.Fatalf("%d client credentials grants for one token renewed once, want 2", n)
		}
		for i, tok := range toks {
			if tok == "" {
				t.Fatalf("caller %d got no token", i)
			}
		}
	})

	t.Run("T59_provider_down_keeps_a_valid_token_fails_an_expired_one", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withClientTokens())
		ct := e.clientTokens()
		first, err := ct.Token(t.Context(), DefaultClientToken)
		if err != nil {
			t.Fatal(err)
		}
		e.provider.SetDown(true)
		e.clock.Advance(4*time.Minute + 30*time.Second) // due, still valid
		if tok, err := ct.Token(t.Context(), DefaultClientToken); err != nil || tok != first {
			t.Fatalf("due token with the provider down: %v", err)
		}
		e.clock.Advance(time.Minute) // expired
		if _, err := ct.Token(t.Context(), DefaultClientToken); !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("expired token with the provider down: %v", err)
		}
		e.provider.SetDown(false)
		if tok, err := ct.Token(t.Context(), DefaultClientToken); err != nil || tok == first {
			t.Fatalf("after recovery: %v", err)
		}
	})

	t.Run("T60_rejected_client", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withClientTokens(), withConfig(func(c *Config) {
			c.ClientTokens = map[string]ClientTokenConfig{DefaultClientToken: {}}
			c.ClientSecret = "wrong-secret"
		}))
		if _, err := e.clientTokens().Token(t.Context(), DefaultClientToken); !errors.Is(err, ErrClientRejected) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("concurrent_callers_share_one_grant", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withClientTokens())
		ct := e.clientTokens()
		var wg sync.WaitGroup
		toks := make([]string, 20)
		for i := range toks {
			wg.Go(func() { toks[i], _ = ct.Token(t.Context(), DefaultClientToken) })
		}
		wg.Wait()
		for i, tok := range toks {
			if tok == "" || tok != toks[0] {
				t.Fatalf("caller %d got a different token", i)
			}
		}
		if n := e.provider.Stats().ClientCredentialsGrants; n != 1 {
			t.Fatalf("%d grants", n)
		}
	})
}
