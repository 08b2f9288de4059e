package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// fakeProfiles stands in for oidcflow.DerivedTokens (tested there against
// the provider and the lock): a token per session and profile, or an error.
type fakeProfiles struct {
	calls atomic.Int64
	err   error
}

var fakeProfileTypes = map[string]string{
	"orders":  oidcflow.ProfileExchange,
	"reports": oidcflow.ProfileExchange,
	"ledger":  oidcflow.ProfileRefresh,
	"partner": oidcflow.ProfileClient,
	"own":     oidcflow.ProfileSession,
}

func (f *fakeProfiles) Type(name string) (string, bool) {
	t, ok := fakeProfileTypes[name]
	return t, ok
}

func (f *fakeProfiles) Due(cached *sessionpb.ClientToken) bool {
	return cached == nil || cached.GetExpiresAtUnixMs() <= t0.UnixMilli()
}

// exchangedToken is the fake's token for a session and profile.
func exchangedToken(sub, profile string) string {
	return fmt.Sprintf("xt-%s-%s-0123456789", profile, sub)
}

func (f *fakeProfiles) Token(_ context.Context, _ session.ID, sess *sessionpb.Session, name string, cached *sessionpb.ClientToken) (string, error) {
	f.calls.Add(1)
	if f.err != nil {
		if errors.Is(f.err, oidcflow.ErrProviderUnavailable) && cached != nil && cached.GetExpiresAtUnixMs() > t0.UnixMilli() {
			return cached.GetAccessToken(), nil
		}
		return "", f.err
	}
	return exchangedToken(sess.GetSubject(), name), nil
}

func withProfiles(p *fakeProfiles) envOption {
	return func(c *Config, _ *Deps) {
		c.PathRules = append(c.PathRules,
			PathRule{Prefix: "/orders/", Policy: PolicyUser, Token: "orders"},
			PathRule{Prefix: "/partner-api/", Policy: PolicyUserOrClient, Token: "partner"},
			PathRule{Prefix: "/missing/", Policy: PolicyUser, Token: "nope"},
		)
	}
}

// TestTokenProfiles is T74 at Check: each route gets the token made for its
// API, never another one; a refused exchange is 403 and a failed one 503,
// with no token at all, and the session stays.
func TestTokenProfiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path string
		ext        map[string]string
		err        error
		cookie     bool // send the session cookie
		status     int
		code       string
		token      string // the bearer upstream gets
	}{
		{"T74_exchange_profile_by_rule", "/orders/1", nil, nil, true, 200, "", exchangedToken("user-1", "orders")},
		{"T74_exchange_profile_by_extension", "/api/x", map[string]string{extPolicy: "user", extToken: "reports"}, nil, true, 200, "", exchangedToken("user-1", "reports")},
		{"T74_refresh_profile_by_extension", "/api/x", map[string]string{extPolicy: "user", extToken: "ledger"}, nil, true, 200, "", exchangedToken("user-1", "ledger")},
		{"session profile is the session's own token", "/api/x", map[string]string{extPolicy: "user", extToken: "own"}, nil, true, 200, "", testToken},
		{"no profile: the session's own token", "/api/x", map[string]string{extPolicy: "user"}, nil, true, 200, "", testToken},
		{"client profile with a session", "/partner-api/x", nil, nil, true, 200, "", testClientToken("partner")},
		{"client profile without a session (user_or_client)", "/partner-api/x", nil, nil, false, 200, "", testClientToken("partner")},
		{"T74_refused_exchange_403_no_fallback", "/orders/1", nil, fmt.Errorf("x: %w", oidcflow.ErrExchangeRefused), true, 403, "token_exchange_refused", ""},
		{"T74_failed_exchange_503_no_fallback", "/orders/1", nil, fmt.Errorf("x: %w", oidcflow.ErrProviderUnavailable), true, 503, "token_exchange_unavailable", ""},
		{"unknown profile fails closed", "/missing/1", nil, nil, true, 500, "token_profile_unknown", ""},
		{"unknown profile by extension", "/api/x", map[string]string{extPolicy: "user", extToken: "nope"}, nil, true, 500, "token_profile_unknown", ""},
		{"client route naming an exchange profile", "/api/x", map[string]string{extPolicy: "client", extToken: "orders"}, nil, true, 500, "token_profile_unknown", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &fakeProfiles{err: tc.err}
			e := newEnv(t, withProfiles(p), func(_ *Config, d *Deps) { d.Tokens = p })
			h := e.apiHeaders()
			if !tc.cookie {
				delete(h, "cookie")
			}
			resp := e.check(t, creq(http.MethodGet, tc.path, h, tc.ext))
			if got := status(resp); got != tc.status || errorCode(t, resp) != tc.code {
				t.Fatalf("%d %q, want %d %q", got, errorCode(t, resp), tc.status, tc.code)
			}
			v, n := upstreamHeader(resp, "authorization")
			if tc.status != 200 {
				if resp.GetOkResponse() != nil || clearsCookie(resp) {
					t.Fatal("a failed profile token passed upstream or ended the session")
				}
				return
			}
			if n != 1 || v != "Bearer "+tc.token {
				t.Fatalf("authorization %q (%d), want Bearer %s", v, n, tc.token)
			}
		})
	}
}

// TestTokenProfileCached: a valid cached profile token read with the
// session is sent without asking the profile source.
func TestTokenProfileCached(t *testing.T) {
	t.Parallel()
	p := &fakeProfiles{}
	e := newEnv(t, withProfiles(p), func(_ *Config, d *Deps) { d.Tokens = p })
	reader := &derivedReader{countingStore: e.store, token: &sessionpb.ClientToken{AccessToken: "cached-orders-0123456789", ExpiresAtUnixMs: t0.Add(10 * 60e9).UnixMilli()}}
	f := e.srv.frontends.Load().list[0]
	f.derived = reader
	resp := e.check(t, creq(http.MethodGet, "/orders/1", e.apiHeaders(), nil))
	if v, _ := upstreamHeader(resp, "authorization"); v != "Bearer cached-orders-0123456789" || p.calls.Load() != 0 {
		t.Fatalf("authorization %q, profile source calls %d", v, p.calls.Load())
	}
	if reader.withDerived.Load() != 1 || e.store.gets.Load() != 1 {
		t.Fatalf("reads: %d with the token, %d in all; want the token read in the session's one read", reader.withDerived.Load(), e.store.gets.Load())
	}
}

// derivedReader adds GetWithDerived to the counting store with a fixed token.
type derivedReader struct {
	*countingStore
	token       *sessionpb.ClientToken
	withDerived atomic.Int64
}

func (d *derivedReader) GetWithDerived(ctx context.Context, id session.ID, _ string) (*sessionpb.Session, *sessionpb.ClientToken, error) {
	d.withDerived.Add(1)
	s, err := d.Get(ctx, id)
	return s, d.token, err
}
