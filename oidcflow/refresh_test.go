package oidcflow

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// loggedIn logs a browser in and returns its session ID and record.
func (e *env) loggedIn() (session.ID, *sessionpb.Session) {
	e.t.Helper()
	b := e.browser()
	b.login("/")
	id := b.sessionID()
	rec, err := e.store.Get(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return id, rec
}

// tamper rewrites the stored record and returns it as stored.
func (e *env) tamper(id session.ID, edit func(*sessionpb.Session)) *sessionpb.Session {
	e.t.Helper()
	rec, err := e.store.inner.Get(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	edit(rec)
	if err := e.store.inner.Update(e.t.Context(), id, rec, rec.GetGeneration()); err != nil {
		e.t.Fatal(err)
	}
	return rec
}

// due is how far to move the clock for a 5-minute access token to be
// inside the 60s lead but still valid.
const due = 4*time.Minute + 30*time.Second

func TestRefresh(t *testing.T) {
	t.Parallel()

	t.Run("not_due_returns_the_record", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		calls := e.tokenCalls.Load()
		got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil || got != rec || e.tokenCalls.Load() != calls {
			t.Fatalf("Refresh of a fresh token: %v, same=%v, token calls %d", err, got == rec, e.tokenCalls.Load()-calls)
		}
	})

	t.Run("T63_shares_one_attempt_across_20_goroutines", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(due)
		release := e.provider.HoldRefreshes()
		const n = 20
		got := make([]*sessionpb.Session, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { got[i], errs[i] = e.h.Refresher().Refresh(t.Context(), id, rec) })
		}
		waitFor(t, func() bool { return e.provider.Stats().RefreshRequests == 1 })
		time.Sleep(50 * time.Millisecond) // let the rest join the attempt in flight
		release()
		wg.Wait()
		for i := range n {
			if errs[i] != nil || got[i].GetAccessToken() == rec.GetAccessToken() || got[i].GetAccessToken() != got[0].GetAccessToken() {
				t.Fatalf("caller %d: %v", i, errs[i])
			}
		}
		st := e.provider.Stats()
		if st.RefreshTokenGrants != 1 || st.RefreshRequests != 1 || st.InvalidGrants != 0 {
			t.Fatalf("provider saw %+v; want exactly one refresh", st)
		}
		stored, _ := e.store.Get(t.Context(), id)
		if stored.GetAccessToken() != got[0].GetAccessToken() || stored.GetGeneration() != rec.GetGeneration()+1 {
			t.Fatalf("stored generation %d", stored.GetGeneration())
		}
		// A late caller holding the old record gets the stored one, no second refresh.
		late, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil || late.GetAccessToken() != stored.GetAccessToken() || e.provider.Stats().RefreshRequests != 1 {
			t.Fatalf("late caller: %v; refreshes %d", err, e.provider.Stats().RefreshRequests)
		}
	})

	t.Run("T53_attempt_outlived_by_its_token_never_passes_it", func(t *testing.T) {
		t.Parallel()
		// A store or provider so slow that the token a refresh brings back
		// has expired by the time the attempt ends: a caller must get an
		// error (503), never that token.
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(6 * time.Minute) // expired: callers wait for the refresh
		release := e.provider.HoldRefreshes()
		type result struct {
			s   *sessionpb.Session
			err error
		}
		done := make(chan result, 1)
		go func() {
			got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
			done <- result{got, err}
		}()
		waitFor(t, func() bool { return e.provider.Stats().RefreshRequests == 1 })
		e.clock.Advance(6 * time.Minute) // longer than the new token's 5 minutes
		release()
		r := <-done
		if r.err == nil {
			t.Fatalf("Refresh passed a token that expired at %d, now %d",
				r.s.GetAccessTokenExpiresAtUnixMs(), e.clock.Now().UnixMilli())
		}
		if errors.Is(r.err, ErrRefreshRejected) || errors.Is(r.err, session.ErrNotFound) {
			t.Fatalf("a slow refresh is no reason to end the session: %v", r.err)
		}
		if _, err := e.store.Get(t.Context(), id); err != nil {
			t.Fatalf("session lost: %v", err)
		}
		// The next caller renews again and gets a token it can use.
		stored, _ := e.store.Get(t.Context(), id)
		got, err := e.h.Refresher().Refresh(t.Context(), id, stored)
		if err != nil || got.GetAccessTokenExpiresAtUnixMs() <= e.clock.Now().UnixMilli() {
			t.Fatalf("next refresh: %v", err)
		}
	})

	t.Run("T61_rotated_refresh_token_saved", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(due)
		got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil || got.GetRefreshToken() == rec.GetRefreshToken() || got.GetRefreshToken() == "" {
			t.Fatalf("rotation: %v", err)
		}
		if got.GetIdToken() == rec.GetIdToken() || got.GetAccessTokenExpiresAtUnixMs() != e.clock.Now().Add(5*time.Minute).UnixMilli() {
			t.Fatal("new ID token or expiry not taken")
		}
		stored, _ := e.store.Get(t.Context(), id)
		if stored.GetRefreshToken() != got.GetRefreshToken() {
			t.Fatal("rotated refresh token not stored")
		}
	})

	t.Run("T61_keeps_old_refresh_token_when_none_returned", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withProvider(func(c *oidctest.ProviderConfig) { c.DisableRefreshRotation = true }))
		id, rec := e.loggedIn()
		e.clock.Advance(due)
		got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil || got.GetRefreshToken() != rec.GetRefreshToken() || got.GetAccessToken() == rec.GetAccessToken() {
			t.Fatalf("refresh without a new RT: %v", err)
		}
		// And the kept token still works next time.
		e.clock.Advance(5 * time.Minute)
		if _, err := e.h.Refresher().Refresh(t.Context(), id, got); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("T57_T60_invalid_grant_rejected_session_deleted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, _ := e.loggedIn()
		rec := e.tamper(id, func(s *sessionpb.Session) { s.RefreshToken = "rotated-away" })
		e.clock.Advance(due) // still valid: rejection wins all the same
		_, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if !errors.Is(err, ErrRefreshRejected) {
			t.Fatalf("err = %v, want ErrRefreshRejected", err)
		}
		if _, err := e.store.Get(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("session not deleted: %v", err)
		}
		if strings.Contains(e.logs.String(), "rotated-away") {
			t.Fatal("refresh token in the log")
		}
	})

	t.Run("T57_rotated_token_lost_in_failover_rejected", func(t *testing.T) {
		t.Parallel()
		// The case itself, not a made-up token: a refresh rotated RT1 to RT2
		// and wrote RT2, then a failover promoted a replica that never got
		// that write, so the store holds RT1 again. The provider has seen
		// RT1 used: invalid_grant (reuse), and the session ends cleanly.
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(due)
		fresh, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil || fresh.GetRefreshToken() == rec.GetRefreshToken() {
			t.Fatalf("first refresh: %v", err)
		}
		lost := e.tamper(id, func(s *sessionpb.Session) {
			s.RefreshToken, s.AccessToken, s.IdToken = rec.GetRefreshToken(), rec.GetAccessToken(), rec.GetIdToken()
			s.AccessTokenExpiresAtUnixMs, s.AccessTokenIssuedAtUnixMs = rec.GetAccessTokenExpiresAtUnixMs(), rec.GetAccessTokenIssuedAtUnixMs()
		})
		e.clock.Advance(time.Minute) // RT1's access token has expired: a refresh is needed
		_, err = e.h.Refresher().Refresh(t.Context(), id, lost)
		if !errors.Is(err, ErrRefreshRejected) {
			t.Fatalf("refresh with the lost RT1 = %v, want ErrRefreshRejected", err)
		}
		if _, err := e.store.Get(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("session not deleted: %v", err)
		}
		if st := e.provider.Stats(); st.InvalidGrants != 1 || st.RefreshTokenGrants != 1 {
			t.Fatalf("provider saw %+v; want one grant and one invalid_grant for the reused token", st)
		}
		for _, tok := range []string{rec.GetRefreshToken(), fresh.GetRefreshToken()} {
			if strings.Contains(e.logs.String(), tok) {
				t.Fatal("refresh token in the log")
			}
		}
	})

	t.Run("T42_changed_subject_rejected", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, _ := e.loggedIn()
		rec := e.tamper(id, func(s *sessionpb.Session) { s.Subject = "someone-else" })
		e.clock.Advance(due)
		if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); !errors.Is(err, ErrRefreshRejected) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.store.Get(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
			t.Fatal("session not deleted")
		}
	})

	t.Run("no_refresh_token_expired_rejected", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, _ := e.loggedIn()
		rec := e.tamper(id, func(s *sessionpb.Session) { s.RefreshToken = "" })
		e.clock.Advance(6 * time.Minute)
		if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); !errors.Is(err, ErrRefreshRejected) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("T59_provider_down_valid_token_returns_current", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(due)
		e.provider.SetDown(true)
		got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil || got.GetAccessToken() != rec.GetAccessToken() {
			t.Fatalf("provider down, token valid: %v", err)
		}
		if _, err := e.store.Get(t.Context(), id); err != nil {
			t.Fatal("session lost")
		}
	})

	t.Run("T59_provider_down_expired_token_unavailable", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(6 * time.Minute)
		e.provider.SetDown(true)
		if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.store.Get(t.Context(), id); err != nil {
			t.Fatal("session lost")
		}
	})

	t.Run("T60_transient_answers_keep_session", func(t *testing.T) {
		t.Parallel()
		for name, answer := range map[string]http.HandlerFunc{
			"5xx": func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"error":"server_error"}`))
			},
			"non_json": func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte("<html>maintenance</html>"))
			},
			"over_1MiB": func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"access_token":"` + strings.Repeat("a", 2<<20) + `","token_type":"Bearer"}`))
			},
			"temporarily_unavailable": func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"error":"temporarily_unavailable"}`))
			},
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				id, rec := e.loggedIn()
				e.clock.Advance(6 * time.Minute)
				e.hook(oidctest.PathToken, answer)
				calls := e.tokenCalls.Load()
				if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); !errors.Is(err, ErrProviderUnavailable) {
					t.Fatalf("err = %v", err)
				}
				stored, err := e.store.Get(t.Context(), id)
				if err != nil || stored.GetRefreshToken() != rec.GetRefreshToken() || e.tokenCalls.Load()-calls != 1 {
					t.Fatalf("session changed or lost (%v), %d token calls", err, e.tokenCalls.Load()-calls)
				}
			})
		}
	})

	t.Run("T59_slow_token_endpoint_times_out", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withConfig(func(c *Config) { c.ProviderTimeout = 300 * time.Millisecond }))
		id, rec := e.loggedIn()
		e.clock.Advance(6 * time.Minute)
		e.provider.SetRefreshDelay(3 * time.Second)
		calls := e.tokenCalls.Load()
		_, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("err = %v", err)
		}
		// provider_timeout cut the call: the provider never answered it.
		if !errors.Is(err, context.DeadlineExceeded) || e.tokenCalls.Load()-calls != 1 {
			t.Fatalf("err = %v after %d token calls; want the provider timeout after exactly one", err, e.tokenCalls.Load()-calls)
		}
	})

	t.Run("T60_invalid_client_alerts_keeps_session", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(6 * time.Minute)
		e.hook(oidctest.PathToken, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		})
		if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); !errors.Is(err, ErrClientRejected) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.store.Get(t.Context(), id); err != nil {
			t.Fatal("session lost")
		}
		if !strings.Contains(e.logs.String(), "level=ERROR") {
			t.Fatal("invalid_client not logged as an error")
		}
	})

	t.Run("T65_conflict_uses_stored_record", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(due)
		e.store.mu.Lock()
		e.store.beforeUpdate = func(ctx context.Context, id session.ID) {
			other, _ := e.store.inner.Get(ctx, id)
			other.AccessToken = "written-by-another-replica"
			other.AccessTokenExpiresAtUnixMs = e.clock.Now().Add(time.Hour).UnixMilli()
			_ = e.store.inner.Update(ctx, id, other, other.GetGeneration())
		}
		e.store.mu.Unlock()
		got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil || got.GetAccessToken() != "written-by-another-replica" {
			t.Fatalf("after a conflict: %v", err)
		}
	})

	t.Run("T66_logout_racing_refresh_stays_deleted", func(t *testing.T) {
		t.Parallel()
		rev := &countingRevoker{}
		e := newEnv(t, withDeps(func(d *Deps) { d.Revoker = rev }))
		id, rec := e.loggedIn()
		e.clock.Advance(due)
		e.store.mu.Lock()
		e.store.beforeUpdate = func(ctx context.Context, id session.ID) { _ = e.store.inner.Delete(ctx, id) }
		e.store.mu.Unlock()
		_, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.store.Get(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
			t.Fatal("deleted session came back")
		}
		if rev.n.Load() != 1 || rev.last.Load() == rec.GetRefreshToken() {
			t.Fatalf("new tokens not revoked: %d calls", rev.n.Load())
		}
	})

	t.Run("waiter_honours_its_own_context", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.clock.Advance(5*time.Minute + time.Second) // expired: no old token to fall back on
		release := e.provider.HoldRefreshes()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		// The provider holds the refresh until release: only the waiter's own
		// context can end this call.
		if _, err := e.h.Refresher().Refresh(ctx, id, rec); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		release()
		// The attempt went on and saved its tokens: nothing was lost, no second refresh.
		waitFor(t, func() bool { s, _ := e.store.Get(t.Context(), id); return s.GetAccessToken() != rec.GetAccessToken() })
		got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil || got.GetAccessToken() == rec.GetAccessToken() || e.provider.Stats().RefreshRequests != 1 {
			t.Fatalf("after release: %v, refreshes %d", err, e.provider.Stats().RefreshRequests)
		}
	})

	t.Run("T62_provider_not_discovered", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		id := session.ID{1}
		rec := &sessionpb.Session{AccessToken: "at", RefreshToken: "rt", AccessTokenExpiresAtUnixMs: e.clock.Now().Add(-time.Second).UnixMilli(),
			AbsoluteExpiresAtUnixMs: e.clock.Now().Add(time.Hour).UnixMilli()}
		if err := e.store.Create(t.Context(), id, rec); err != nil {
			t.Fatal(err)
		}
		if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}

// countingRevoker counts revocations and keeps the last refresh token.
type countingRevoker struct {
	n    atomic.Int64
	last atomic.Value
}

func (c *countingRevoker) Revoke(_ context.Context, s *sessionpb.Session) error {
	c.n.Add(1)
	c.last.Store(s.GetRefreshToken())
	return nil
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
