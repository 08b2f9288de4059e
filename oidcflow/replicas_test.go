package oidcflow

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// redisReplicas is one real Redis shared by several "replicas": each has
// its own RedisStore (own connections, own pub/sub) and its own Refresher,
// as separate envoy-bff processes would.
type redisReplicas struct {
	addr    string
	lockTTL time.Duration
}

func (r *redisReplicas) store(t *testing.T, cfg session.Config, now func() time.Time) session.Store {
	t.Helper()
	cfg.Backend = session.BackendRedis
	cfg.Redis.URL = "redis://" + r.addr + "/0"
	if r.lockTTL > 0 {
		cfg.LockTTL = r.lockTTL
	}
	st := session.NewRedisStore(redis.NewClient(&redis.Options{Addr: r.addr}), cfg, sessiontest.KeyRing(t), now)
	t.Cleanup(func() { st.Close() })
	return st
}

// newRedisEnv is an env whose store is Redis; rr adds replicas over the same Redis.
func newRedisEnv(t *testing.T, lockTTL time.Duration, opts ...envOption) (e *env, rr *redisReplicas) {
	t.Helper()
	rr = &redisReplicas{addr: sessiontest.StartRedis(t), lockTTL: lockTTL}
	opts = append(opts, withStore(func(cfg session.Config, now func() time.Time) session.Store {
		return rr.store(t, cfg, now)
	}))
	e = newEnv(t, opts...)
	e.redisAddr = rr.addr
	return e, rr
}

// deps are another replica's: its own store over the shared Redis, the env's provider and clock.
func (r *redisReplicas) deps(t *testing.T, e *env) Deps {
	t.Helper()
	return Deps{Store: r.store(t, sessiontest.Config(), e.clock.Now), Provider: e.h.Provider(), Now: e.clock.Now}
}

// refresher is another replica's Refresher.
func (r *redisReplicas) refresher(t *testing.T, e *env) *Refresher {
	t.Helper()
	ref, err := NewRefresher(e.cfg, r.deps(t, e))
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// dropLocks deletes every refresh lock in the env's Redis, as a failover
// to a replica that never saw them would.
func (e *env) dropLocks() {
	e.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	defer c.Close()
	keys, err := c.Keys(e.t.Context(), "*:lk").Result()
	if err != nil || len(keys) == 0 {
		e.t.Fatalf("refresh locks in Redis: %v %v", keys, err)
	}
	if err := c.Del(e.t.Context(), keys...).Err(); err != nil {
		e.t.Fatal(err)
	}
}

func TestRefreshAcrossReplicas(t *testing.T) {
	t.Parallel()

	t.Run("T63_50_calls_on_3_replicas_one_grant", func(t *testing.T) {
		t.Parallel()
		e, rr := newRedisEnv(t, 0)
		refs := []*Refresher{e.h.Refresher(), rr.refresher(t, e), rr.refresher(t, e)}
		id, rec := e.loggedIn()
		e.clock.Advance(5*time.Minute + time.Second) // expired: nobody may pass the old token
		release := e.provider.HoldRefreshes()
		const n = 50
		got := make([]*sessionpb.Session, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				got[i], errs[i] = refs[i%len(refs)].Refresh(ctx, id, rec)
			})
		}
		waitFor(t, func() bool { return e.provider.Stats().RefreshRequests == 1 })
		time.Sleep(100 * time.Millisecond) // every replica is waiting by now
		release()
		wg.Wait()
		for i := range n {
			if errs[i] != nil || got[i].GetAccessToken() == rec.GetAccessToken() || got[i].GetAccessToken() != got[0].GetAccessToken() {
				t.Fatalf("call %d on replica %d: %v", i, i%len(refs), errs[i])
			}
		}
		if st := e.provider.Stats(); st.RefreshTokenGrants != 1 || st.RefreshRequests != 1 || st.InvalidGrants != 0 {
			t.Fatalf("provider saw %+v; want exactly one refresh", st)
		}
	})

	t.Run("valid_token_passes_while_another_replica_holds_the_lock", func(t *testing.T) {
		t.Parallel()
		e, rr := newRedisEnv(t, 0)
		a, b := e.h.Refresher(), rr.refresher(t, e)
		id, rec := e.loggedIn()
		e.clock.Advance(4*time.Minute + 10*time.Second) // due (60 s lead), more than half the lead left
		release := e.provider.HoldRefreshes()
		defer release()
		done := make(chan error, 1)
		go func() { _, err := a.Refresh(t.Context(), id, rec); done <- err }()
		waitFor(t, func() bool { return e.provider.Stats().RefreshRequests == 1 })
		got, err := b.Refresh(t.Context(), id, rec)
		if err != nil || got.GetAccessToken() != rec.GetAccessToken() {
			t.Fatalf("second replica while the first refreshes: %v; want the still-valid token at once", err)
		}
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if st := e.provider.Stats(); st.RefreshRequests != 1 {
			t.Fatalf("%d refresh requests", st.RefreshRequests)
		}
	})

	t.Run("near_expiry_waits_for_the_other_replicas_token", func(t *testing.T) {
		t.Parallel()
		// With less than half the lead left, a token may expire before the
		// request reaches the API: wait for the holder's new one instead.
		e, rr := newRedisEnv(t, 0)
		a, b := e.h.Refresher(), rr.refresher(t, e)
		id, rec := e.loggedIn()
		e.clock.Advance(4*time.Minute + 40*time.Second) // 20 s left of a 60 s lead
		release := e.provider.HoldRefreshes()
		done := make(chan error, 1)
		go func() { _, err := a.Refresh(t.Context(), id, rec); done <- err }()
		waitFor(t, func() bool { return e.provider.Stats().RefreshRequests == 1 })
		got := make(chan *sessionpb.Session, 1)
		go func() { s, _ := b.Refresh(t.Context(), id, rec); got <- s }()
		time.Sleep(100 * time.Millisecond)
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if s := <-got; s.GetAccessToken() == rec.GetAccessToken() || s.GetAccessToken() == "" {
			t.Fatal("the second replica passed the nearly expired token instead of waiting")
		}
		if st := e.provider.Stats(); st.RefreshRequests != 1 {
			t.Fatalf("%d refresh requests", st.RefreshRequests)
		}
	})

	t.Run("T59_slow_provider_longer_than_the_lock_TTL_still_one_grant", func(t *testing.T) {
		t.Parallel()
		// The lock lives 300 ms; the provider takes 1.2 s. Without renewal
		// the second replica would refresh the same token and the provider
		// would revoke the family.
		e, rr := newRedisEnv(t, 300*time.Millisecond)
		a, b := e.h.Refresher(), rr.refresher(t, e)
		id, rec := e.loggedIn()
		e.clock.Advance(5*time.Minute + time.Second)
		e.provider.SetRefreshDelay(1200 * time.Millisecond)
		done := make(chan error, 1)
		go func() { _, err := a.Refresh(t.Context(), id, rec); done <- err }()
		waitFor(t, func() bool { return e.provider.Stats().RefreshRequests == 1 })
		time.Sleep(600 * time.Millisecond) // two lock TTLs into the provider call
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		got, err := b.Refresh(ctx, id, rec)
		if err != nil {
			t.Fatalf("waiting replica: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		stored, _ := e.store.Get(t.Context(), id)
		if got.GetAccessToken() != stored.GetAccessToken() {
			t.Fatal("the waiting replica did not get the holder's tokens")
		}
		if st := e.provider.Stats(); st.RefreshRequests != 1 || st.InvalidGrants != 0 || st.FamilyRevocations != 0 {
			t.Fatalf("provider saw %+v; want one refresh", st)
		}
	})

	t.Run("waiter_out_of_time_keeps_the_session", func(t *testing.T) {
		t.Parallel()
		e, rr := newRedisEnv(t, 0)
		a, b := e.h.Refresher(), rr.refresher(t, e)
		id, rec := e.loggedIn()
		e.clock.Advance(5*time.Minute + time.Second)
		release := e.provider.HoldRefreshes()
		defer release()
		done := make(chan error, 1)
		go func() { _, err := a.Refresh(t.Context(), id, rec); done <- err }()
		waitFor(t, func() bool { return e.provider.Stats().RefreshRequests == 1 })
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if _, err := b.Refresh(ctx, id, rec); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiter out of time: %v", err)
		}
		if _, err := e.store.Get(t.Context(), id); err != nil {
			t.Fatalf("the session is gone after a waiter ran out of time: %v", err)
		}
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	// A holder whose lock is lost mid-call (a Redis failover can drop the
	// key) finds on return that another replica rotated the token. With a
	// strict provider its stale refresh gets invalid_grant, which must not
	// end the session; with a reuse interval it gets tokens, which must not
	// overwrite the newer ones.
	for _, tc := range []struct {
		name          string
		reuseInterval time.Duration
	}{
		{"T65_stale_holder_invalid_grant_keeps_the_session", 0},
		{"T65_stale_holder_cannot_overwrite_newer_tokens", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, rr := newRedisEnv(t, 0)
			e.provider.SetReuseInterval(tc.reuseInterval)
			a, b := e.h.Refresher(), rr.refresher(t, e)
			id, rec := e.loggedIn()
			e.clock.Advance(5*time.Minute + time.Second)
			release := e.provider.HoldNextRefreshes(1)
			defer release()
			type result struct {
				rec *sessionpb.Session
				err error
			}
			done := make(chan result, 1)
			go func() { r, err := a.Refresh(t.Context(), id, rec); done <- result{r, err} }()
			waitFor(t, func() bool { return e.provider.HeldRefreshes() == 1 })
			e.dropLocks()
			fresh, err := b.Refresh(t.Context(), id, rec)
			if err != nil || fresh.GetAccessToken() == rec.GetAccessToken() {
				t.Fatalf("the other replica's refresh: %v", err)
			}
			release()
			stale := <-done
			if stale.err != nil || stale.rec.GetAccessToken() != fresh.GetAccessToken() {
				t.Fatalf("stale holder: %v; returns the newer tokens: %v", stale.err, stale.rec.GetAccessToken() == fresh.GetAccessToken())
			}
			stored, err := e.store.Get(t.Context(), id)
			if err != nil || stored.GetAccessToken() != fresh.GetAccessToken() || stored.GetRefreshToken() != fresh.GetRefreshToken() {
				t.Fatalf("stored record after the stale holder: %v; still the newer tokens: %v", err, err == nil && stored.GetAccessToken() == fresh.GetAccessToken())
			}
			if st := e.provider.Stats(); st.RefreshRequests != 2 {
				t.Fatalf("%d refresh requests, want the two racing ones", st.RefreshRequests)
			}
		})
	}
}

func TestDueAt(t *testing.T) {
	t.Parallel()
	at := func(s int64) time.Time { return time.UnixMilli(s * 1000) }
	for _, tc := range []struct {
		name         string
		now          int64
		issued, exp  int64 // seconds
		lead         time.Duration
		want         bool
		wantExpiryOK bool
	}{
		{name: "long_token_before_lead", now: 1000, issued: 1000, exp: 4600, lead: time.Minute, want: false},
		{name: "long_token_inside_lead", now: 4541, issued: 1000, exp: 4600, lead: time.Minute, want: true},
		{name: "short_token_lead_capped_at_half", now: 1029, issued: 1000, exp: 1060, lead: time.Minute, want: false},
		{name: "short_token_past_half", now: 1030, issued: 1000, exp: 1060, lead: time.Minute, want: true},
		{name: "unknown_issue_time_uses_lead", now: 1000, issued: 0, exp: 1060, lead: time.Minute, want: true},
		{name: "no_expiry_never_due", now: 99999, issued: 1000, exp: 0, lead: time.Minute, want: false},
		{name: "expired", now: 1061, issued: 1000, exp: 1060, lead: 0, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := dueAt(at(tc.now), tc.lead, tc.issued*1000, tc.exp*1000); got != tc.want {
				t.Fatalf("dueAt = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPassableAt(t *testing.T) {
	t.Parallel()
	at := func(s int64) time.Time { return time.UnixMilli(s * 1000) }
	for _, tc := range []struct {
		name             string
		now, issued, exp int64 // seconds
		want             bool
	}{
		{"more_than_half_the_lead_left", 1000 + 3600 - 31, 1000, 4600, true},
		{"half_the_lead_left", 1000 + 3600 - 30, 1000, 4600, false},
		{"short_token_lead_is_half_its_life", 1044, 1000, 1060, true}, // lead 30 s, passable until 15 s left
		{"short_token_last_quarter", 1046, 1000, 1060, false},
		{"no_expiry", 99999, 1000, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := passableAt(at(tc.now), time.Minute, tc.issued*1000, tc.exp*1000); got != tc.want {
				t.Fatalf("passableAt = %v, want %v", got, tc.want)
			}
		})
	}
}
