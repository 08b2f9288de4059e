package oidcflow

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// exchangeProfiles are the profiles the exchange tests use: two APIs.
var exchangeProfiles = TokenProfiles{
	"orders":  {Type: ProfileExchange, Audience: "orders-api", Scopes: []string{"orders.read"}},
	"reports": {Type: ProfileExchange, Resource: "https://reports.example.com/", Scopes: []string{"reports.read"}},
	"ledger":  {Type: ProfileRefresh, Resource: "https://ledger.example.com/"},
}

// exchangeEnv is a logged-in session at the local provider, which allows
// exchanges for both APIs, and a DerivedTokens over the env's store.
type exchangeEnv struct {
	*env
	id   session.ID
	sess *sessionpb.Session
}

func newExchangeEnv(t *testing.T) *exchangeEnv {
	t.Helper()
	e := newEnv(t, withProvider(func(c *oidctest.ProviderConfig) {
		c.Audiences = map[string][]string{"orders-api": {"orders.read"}, "https://reports.example.com/": {"reports.read"}, "https://ledger.example.com/": nil}
		for i := range c.Clients {
			c.Clients[i].TokenExchange = true
		}
	}))
	b := e.browser()
	b.login("/")
	id := b.sessionID()
	sess, err := e.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return &exchangeEnv{env: e, id: id, sess: sess}
}

// derived is a DerivedTokens as one replica has it.
func (e *exchangeEnv) derived(t *testing.T) *DerivedTokens {
	t.Helper()
	d, err := NewDerivedTokens(e.cfg, exchangeProfiles, Deps{Store: e.store, Provider: e.h.Provider(), Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// audience is the aud claim of a JWT access token (its payload, unverified:
// the provider's own tests verify its signature).
func audience(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if l, ok := c.Aud.([]any); ok && len(l) == 1 {
		return l[0].(string)
	}
	s, _ := c.Aud.(string)
	return s
}

// TestDerivedTokens: each exchange profile gets a token for its own API
// (T74), cached beside the session and shared by replicas, renewed once
// per expiry across replicas and concurrent callers.
func TestDerivedTokens(t *testing.T) {
	t.Parallel()
	e := newExchangeEnv(t)
	ctx := t.Context()

	// Ten callers on each of three replicas, at once, with nothing cached.
	var wg sync.WaitGroup
	tokens := make(chan string, 30)
	for range 3 {
		d := e.derived(t)
		for range 10 {
			wg.Go(func() {
				tok, err := d.Token(ctx, e.id, e.sess, "orders", nil)
				if err != nil {
					t.Error(err)
				}
				tokens <- tok
			})
		}
	}
	wg.Wait()
	close(tokens)
	first := ""
	for tok := range tokens {
		if first == "" {
			first = tok
		}
		if tok != first {
			t.Fatal("callers got different tokens for one session and profile")
		}
	}
	if got := audience(t, first); got != "orders-api" || first == e.sess.GetAccessToken() {
		t.Fatalf("T74: orders got a token for %q (the session's own: %v)", got, first == e.sess.GetAccessToken())
	}
	if n := e.provider.Stats().TokenExchanges; n != 1 {
		t.Fatalf("%d exchanges for one session and profile, want 1", n)
	}

	// The other API gets its own token, never orders'.
	rep, err := e.derived(t).Token(ctx, e.id, e.sess, "reports", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := audience(t, rep); got != "https://reports.example.com/" || rep == first {
		t.Fatalf("T74: reports got a token for %q", got)
	}

	// Cached in the store: another replica reads it, no exchange.
	cached, err := e.store.GetDerivedToken(ctx, e.id, "orders")
	if err != nil || cached.GetAccessToken() != first {
		t.Fatalf("stored token: %v", err)
	}
	d := e.derived(t)
	if d.Due(cached) {
		t.Fatal("a fresh token is due")
	}
	if tok, err := d.Token(ctx, e.id, e.sess, "orders", cached); err != nil || tok != first {
		t.Fatalf("cached: %v", err)
	}
	if n := e.provider.Stats().TokenExchanges; n != 2 {
		t.Fatalf("%d exchanges after a cached read, want 2 (orders and reports)", n)
	}

	// Past the refresh lead: exactly one renewal, with a new token.
	e.clock.Advance(5*time.Minute - 30*time.Second)
	if !d.Due(cached) {
		t.Fatal("a token within the lead of its expiry is not due")
	}
	next, err := d.Token(ctx, e.id, e.sess, "orders", cached)
	if err != nil || next == first {
		t.Fatalf("renewal: %v (same token: %v)", err, next == first)
	}
	if n := e.provider.Stats().TokenExchanges; n != 3 {
		t.Fatalf("%d exchanges after one renewal, want 3", n)
	}
}

// TestRefreshProfile: a refresh profile's token comes from one refresh
// grant with its resource (RFC 8707) per expiry across replicas; the
// rotated refresh token goes into the session, so the session's own
// refresh goes on working.
func TestRefreshProfile(t *testing.T) {
	t.Parallel()
	e := newExchangeEnv(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	tokens := make(chan string, 20)
	for range 2 {
		d := e.derived(t)
		for range 10 {
			wg.Go(func() {
				tok, err := d.Token(ctx, e.id, e.sess, "ledger", nil)
				if err != nil {
					t.Error(err)
				}
				tokens <- tok
			})
		}
	}
	wg.Wait()
	close(tokens)
	first := <-tokens
	for tok := range tokens {
		if tok != first {
			t.Fatal("callers got different tokens")
		}
	}
	if got := audience(t, first); got != "https://ledger.example.com/" || first == e.sess.GetAccessToken() {
		t.Fatalf("T74: the ledger profile got a token for %q", got)
	}
	if n := e.provider.Stats().ResourceRefreshes; n != 1 {
		t.Fatalf("%d refresh grants with the resource, want 1", n)
	}
	after, err := e.store.Get(ctx, e.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.GetRefreshToken() == e.sess.GetRefreshToken() || after.GetAccessToken() != e.sess.GetAccessToken() {
		t.Fatal("the rotated refresh token was not stored, or the session's own access token changed")
	}
	// The session's own refresh uses the rotated token: no invalid_grant.
	e.clock.Advance(5*time.Minute - 30*time.Second)
	grants := e.provider.Stats().RefreshTokenGrants
	if _, err := e.h.Refresher().Refresh(ctx, e.id, after); err != nil {
		t.Fatalf("the session's refresh after a profile's grant: %v", err)
	}
	if s := e.provider.Stats(); s.InvalidGrants != 0 || s.RefreshTokenGrants != grants+1 {
		t.Fatalf("%d invalid_grant, %d refresh grants (want one more than %d)", s.InvalidGrants, s.RefreshTokenGrants, grants)
	}
}

// TestDerivedTokenFailures: a refused exchange is ErrExchangeRefused and
// never returns any token (T74); a transient failure keeps a still-valid
// token and otherwise is ErrProviderUnavailable.
func TestDerivedTokenFailures(t *testing.T) {
	t.Parallel()
	e := newExchangeEnv(t)
	ctx := t.Context()
	d := e.derived(t)

	e.provider.SetExchangeError("invalid_target", 400)
	if tok, err := d.Token(ctx, e.id, e.sess, "orders", nil); !errors.Is(err, ErrExchangeRefused) || tok != "" {
		t.Fatalf("refused exchange: %q, %v", tok, err)
	}
	if !strings.Contains(e.logs.String(), "token exchange refused by the provider") {
		t.Error("a refused exchange is not logged")
	}
	e.provider.SetExchangeError("temporarily_unavailable", 503)
	if _, err := d.Token(ctx, e.id, e.sess, "orders", nil); !errors.Is(err, ErrProviderUnavailable) {
		t.Fatalf("transient failure with nothing cached: %v", err)
	}

	e.provider.SetExchangeError("", 0)
	tok, err := d.Token(ctx, e.id, e.sess, "orders", nil)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := e.store.GetDerivedToken(ctx, e.id, "orders")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5*time.Minute - 30*time.Second) // due, still valid
	e.provider.SetExchangeError("temporarily_unavailable", 503)
	if got, err := d.Token(ctx, e.id, e.sess, "orders", cached); err != nil || got != tok {
		t.Fatalf("transient failure with a valid token: %v (kept: %v)", err, got == tok)
	}
	e.provider.SetExchangeError("invalid_grant", 400)
	if got, err := d.Token(ctx, e.id, e.sess, "orders", cached); !errors.Is(err, ErrExchangeRefused) || got != "" {
		t.Fatalf("T74: a refusal returned a token (%v) with a valid one cached", err)
	}
	if _, err := d.Token(ctx, e.id, e.sess, "nope", nil); !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("unknown profile: %v", err)
	}

	// Logout drops the cached tokens with the session.
	if err := e.store.Delete(ctx, e.id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.GetDerivedToken(ctx, e.id, "orders"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("a deleted session's token is still there: %v", err)
	}
}

// TestTokenProfilesValidate names every bad profile field.
func TestTokenProfilesValidate(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.ClientTokens = map[string]ClientTokenConfig{"billing": {}}
	err := TokenProfiles{
		"Bad Name": {Type: ProfileSession},
		"a":        {Type: "magic"},
		"b":        {Type: ProfileExchange},
		"c":        {Type: ProfileSession, Audience: "x"},
		"d":        {Type: ProfileExchange, Audience: "x", Resource: "relative/path"},
		"e":        {Type: ProfileExchange, Audience: "x", Scopes: []string{"a b"}},
		"billing":  {Type: ProfileClient},
		"f":        {Type: ProfileRefresh, Audience: "x", Resource: "https://f.example/"},
		"g":        {Type: ProfileRefresh},
	}.Validate(cfg)
	for _, want := range []string{
		`"Bad Name": name must be`, `"a".type: must be session, exchange, refresh or client`, `"b": an exchange names the API`,
		`"c": a session profile sends the session's own token`, `"d".resource: must be an absolute URI`, `"e".scopes[0]`,
		`"billing": oidc.client_tokens defines billing too`,
		`"f".audience: a refresh profile names the API by resource`, `"g": a refresh profile names the API: set resource or scopes`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation lacks %q:\n%v", want, err)
		}
	}
	public := DefaultConfig()
	public.ClientAuth = ClientAuthNone
	if err := (TokenProfiles{"o": {Type: ProfileExchange, Audience: "x"}}).Validate(public); err == nil || !strings.Contains(err.Error(), "needs client authentication") {
		t.Errorf("a public client's exchange profile: %v", err)
	}
}
