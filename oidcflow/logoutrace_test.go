package oidcflow

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// newestRefreshToken is the refresh token the provider issued last.
func (e *env) newestRefreshToken() string {
	e.t.Helper()
	issued := e.provider.IssuedTokens() // access, ID and refresh token of each grant, in order
	if len(issued) == 0 {
		e.t.Fatal("nothing issued")
	}
	return issued[len(issued)-1]
}

// revokedAtProvider checks the provider's revocation log holds tok and the
// provider treats it as revoked.
func (e *env) revokedAtProvider(what, tok string) {
	e.t.Helper()
	if !slices.Contains(e.provider.RevocationLog(), tok) || !e.provider.IsRevoked(tok) {
		e.t.Fatalf("%s not revoked at the provider (%d revocations logged)", what, len(e.provider.RevocationLog()))
	}
}

// TestLogoutRacingRefresh covers T66 with the provider in the race: a
// logout (by the user or by back-channel) lands while a refresh is out at
// the provider. The session stays deleted and every refresh token the
// session ever got ends revoked, the new one included. The provider revokes
// only the token presented (RevokeOnlyPresentedToken), so nothing but
// envoy-bff's own revocations can kill the new one.
func TestLogoutRacingRefresh(t *testing.T) {
	t.Parallel()
	onlyPresented := withProvider(func(c *oidctest.ProviderConfig) { c.RevokeOnlyPresentedToken = true })

	type logoutFunc func(e *env, b *browser, rec *sessionpb.Session)
	userLogout := func(e *env, b *browser, rec *sessionpb.Session) {
		if r := b.get(logoutURL("/bff/logout", rec.GetSid())); r.Status != http.StatusFound {
			e.t.Errorf("logout: %d %s", r.Status, r.Body)
		}
	}
	backchannel := func(e *env, _ *browser, rec *sessionpb.Session) {
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: rec.GetSid()})); r.Status != http.StatusOK {
			e.t.Errorf("back-channel logout: %d %s", r.Status, r.Body)
		}
	}
	memory := func(t *testing.T) *env { return newEnv(t, onlyPresented) }
	onRedis := func(t *testing.T) *env { e, _ := newRedisEnv(t, 0, onlyPresented); return e }
	for _, tc := range []struct {
		name     string
		newStore func(t *testing.T) *env
		logout   logoutFunc
	}{
		{"user_logout_memory", memory, userLogout}, {"backchannel_logout_memory", memory, backchannel},
		{"user_logout_redis", onRedis, userLogout}, {"backchannel_logout_redis", onRedis, backchannel},
	} {
		name, newStoreEnv, logout := tc.name, tc.newStore, tc.logout
		// The provider has rotated the token and its answer is on the way
		// when the logout deletes the session: the refresher's fenced write
		// finds nothing and revokes what it got.
		t.Run("T66_"+name+"_while_the_refresh_answer_is_held", func(t *testing.T) {
			t.Parallel()
			e := newStoreEnv(t)
			b := e.browser()
			b.login("/")
			id := b.sessionID()
			rec := e.mustGet(id)
			e.clock.Advance(due)
			release := e.provider.HoldRefreshResponses()
			defer release()
			done := make(chan error, 1)
			go func() { _, err := e.h.Refresher().Refresh(t.Context(), id, rec); done <- err }()
			waitFor(t, func() bool { return e.provider.HeldRefreshResponses() == 1 })
			newRT := e.newestRefreshToken()
			logout(e, b, rec)
			if e.alive(id) {
				t.Fatal("the logout did not delete the session")
			}
			release()
			if err := <-done; !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("refresh after the logout: %v, want session.ErrNotFound", err)
			}
			if e.alive(id) {
				t.Fatal("the refresh brought the session back")
			}
			e.revokedAtProvider("the refresh token at logout", rec.GetRefreshToken())
			e.revokedAtProvider("the refresh token issued during the logout", newRT)
		})

		// The refresh's write lands while the logout's revocation call is
		// out: the logout must not delete a record holding a refresh token
		// it never revoked.
		t.Run("T66_"+name+"_refresh_saved_during_the_logouts_revocation", func(t *testing.T) {
			t.Parallel()
			e := newStoreEnv(t)
			b := e.browser()
			b.login("/")
			id := b.sessionID()
			rec := e.mustGet(id)
			e.clock.Advance(due)
			release := e.provider.HoldRefreshResponses()
			defer release()
			refreshed := make(chan *sessionpb.Session, 1)
			go func() {
				s, err := e.h.Refresher().Refresh(t.Context(), id, rec)
				if err != nil {
					t.Errorf("refresh: %v", err)
				}
				refreshed <- s
			}()
			waitFor(t, func() bool { return e.provider.HeldRefreshResponses() == 1 })

			entered, gate := make(chan struct{}), make(chan struct{})
			var once sync.Once
			e.hook(oidctest.PathRevoke, func(w http.ResponseWriter, r *http.Request) {
				held := false
				once.Do(func() { held = true })
				if held { // only the first revocation waits
					close(entered)
					<-gate
				}
				e.provider.Handler().ServeHTTP(w, r)
			})
			loggedOut := make(chan struct{})
			go func() { defer close(loggedOut); logout(e, b, rec) }()
			<-entered
			release() // the refresh answer arrives and is saved while the revocation is out
			s := <-refreshed
			if s.GetRefreshToken() == rec.GetRefreshToken() || s.GetRefreshToken() == "" {
				t.Fatal("the refresh did not rotate the token")
			}
			close(gate)
			<-loggedOut
			if e.alive(id) {
				t.Fatal("the session survived the logout")
			}
			e.revokedAtProvider("the refresh token at logout", rec.GetRefreshToken())
			e.revokedAtProvider("the refresh token saved during the logout", s.GetRefreshToken())
		})
	}
}
