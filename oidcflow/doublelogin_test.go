package oidcflow

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// TestDoubleLogin covers T67 beyond the existing first-callback-first case:
// one session per completed callback in a browser, the earlier session dead
// once the same browser logs in again (T7), and nothing an abandoned login
// leaves behind outlives its TTL.
func TestDoubleLogin(t *testing.T) {
	t.Parallel()

	t.Run("T67_second_callback_first_then_the_first", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		first := b.authorize(b.startLogin("/one"))
		second := b.authorize(b.startLogin("/two"))
		if r := b.get(second); r.Status != http.StatusFound || r.location() != "/two" {
			t.Fatalf("second callback: %d %q", r.Status, r.location())
		}
		id := b.sessionID()
		wantError(t, b.get(first), http.StatusBadRequest, "invalid_state")
		if b.sessionID() != id || !e.alive(id) {
			t.Fatal("the stale callback replaced or ended the session")
		}
		if n := e.store.creates.Load(); n != 1 {
			t.Fatalf("%d sessions for one browser", n)
		}
	})

	t.Run("T67_T7_two_completed_logins_one_live_session", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		first := b.sessionID()
		b.login("/")
		second := b.sessionID()
		if first == second || e.alive(first) || !e.alive(second) {
			t.Fatalf("after two logins: first alive %v, second alive %v", e.alive(first), e.alive(second))
		}
		refs, err := e.store.FindSessions(t.Context(), e.cfg.Issuer, "demo-user", "")
		if err != nil {
			t.Fatal(err)
		}
		live := 0
		for _, ref := range refs {
			if _, err := e.store.GetByRef(t.Context(), ref); err == nil {
				live++
			}
		}
		if live != 1 {
			t.Fatalf("%d live sessions of the user from one browser", live)
		}
	})

	t.Run("T67_abandoned_login_expires_memory", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		abandoned := mustQuery(t, b.startLogin("/one")).Get("state")
		cookie := b.cookies[loginCookieName]
		b.login("/two")
		e.clock.Advance(sessiontest.Config().LoginStateTTL + time.Second)
		if _, err := e.store.TakeLoginState(t.Context(), abandoned, cookie); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("the abandoned login state outlived its TTL: %v", err)
		}
	})

	t.Run("T67_abandoned_login_leaves_no_key_without_ttl_redis", func(t *testing.T) {
		t.Parallel()
		e, _ := newRedisEnv(t, 0)
		b := e.browser()
		b.startLogin("/one") // never completed
		b.login("/two")
		c := redis.NewClient(&redis.Options{Addr: e.redisAddr})
		defer c.Close()
		keys, err := c.Keys(t.Context(), "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		scfg := sessiontest.Config()
		states := 0
		for _, k := range keys {
			ttl, err := c.PTTL(t.Context(), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			var limit time.Duration
			switch {
			case strings.HasSuffix(k, ":l"):
				states++
				limit = scfg.LoginStateTTL
			case strings.HasSuffix(k, ":s"):
				limit = scfg.IdleTimeout
			case strings.HasSuffix(k, ":ix"):
				// Expires at its last session's absolute expiry, a moment on
				// this test's clock (2030), so only its having one is checked.
				limit = time.Duration(1<<63 - 1)
			default:
				t.Errorf("unexpected key %s", k)
			}
			if ttl <= 0 || ttl > limit {
				t.Errorf("key %s has TTL %s (limit %s)", k, ttl, limit)
			}
		}
		if states != 1 {
			t.Fatalf("%d pending login states, want the abandoned one only: %q", states, keys)
		}
	})
}
