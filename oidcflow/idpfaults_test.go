package oidcflow

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// hugeAnswer is far more than any socket buffer holds, so a provider that
// could write all of it would prove the client read it all.
const hugeAnswer = 64 << 20

// oversized is a provider endpoint gone wrong: a plausible answer (prefix)
// followed by filler up to total bytes, streamed without ever holding it in
// memory. It counts the bytes that reached the connection; a write fails once
// the client hangs up, which ends the handler.
type oversized struct {
	status      int
	contentType string
	prefix      func(r *http.Request) []byte
	filler      byte
	total       int64
	announce    bool // send Content-Length (else chunked)

	written atomic.Int64
	mu      sync.Mutex
	done    chan struct{} // closed when the last request's handler returns
}

func (o *oversized) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	done := make(chan struct{})
	o.done = done
	o.mu.Unlock()
	defer close(done)
	o.written.Store(0)
	w.Header().Set("Content-Type", o.contentType)
	if o.announce {
		w.Header().Set("Content-Length", strconv.FormatInt(o.total, 10))
	}
	status := o.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	n, err := w.Write(o.prefix(r))
	o.written.Add(int64(n))
	chunk := bytes.Repeat([]byte{o.filler}, 32<<10)
	for err == nil && o.written.Load() < o.total {
		c := chunk
		if left := o.total - o.written.Load(); left < int64(len(c)) {
			c = c[:left]
		}
		n, err = w.Write(c)
		o.written.Add(int64(n))
	}
}

// wroteLess waits for the handler to end and checks it could not deliver
// the whole answer: the client stopped reading and hung up.
func (o *oversized) wroteLess(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	done := o.done
	o.mu.Unlock()
	if done == nil {
		t.Fatal("the oversized endpoint was never called")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the oversized answer is still being read after 10s")
	}
	if w := o.written.Load(); w >= o.total {
		t.Fatalf("the provider delivered all %d bytes: the client read the whole answer", w)
	}
}

// fixed is a prefix function returning s.
func fixed(s string) func(*http.Request) []byte {
	return func(*http.Request) []byte { return []byte(s) }
}

// realAnswer is the local provider's own answer to r (a valid document or
// token response), to be padded.
func (e *env) realAnswer(r *http.Request) []byte {
	rec := httptest.NewRecorder()
	e.provider.Handler().ServeHTTP(rec, r)
	return rec.Body.Bytes()
}

// readCounter records the most bytes envoy-bff pulled off the network for
// one response, by request path, beneath its own size limit: the real
// transport, observed.
type readCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	read map[string]int64
}

func newReadCounter() *readCounter {
	return &readCounter{base: http.DefaultTransport, read: map[string]int64{}}
}

func (c *readCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &countedBody{rc: resp.Body, c: c, path: req.URL.Path}
	return resp, nil
}

func (c *readCounter) bytes(path string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read[path]
}

type countedBody struct {
	rc   io.ReadCloser
	c    *readCounter
	path string
	n    int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	b.c.mu.Lock()
	b.c.read[b.path] = max(b.c.read[b.path], b.n)
	b.c.mu.Unlock()
	return n, err
}

func (b *countedBody) Close() error { return b.rc.Close() }

// withReadCounter routes envoy-bff's provider traffic through c.
func withReadCounter(c *readCounter) envOption {
	return withDeps(func(d *Deps) { d.HTTPClient = &http.Client{Transport: c, Timeout: 5 * time.Second} })
}

// readBounded checks envoy-bff read at most the limit and the one byte that
// proves it was passed.
func readBounded(t *testing.T, c *readCounter, path string) {
	t.Helper()
	if n := c.bytes(path); n > maxProviderResponse+1 {
		t.Fatalf("read %d bytes of %s, limit %d", n, path, maxProviderResponse)
	}
}

// TestOversizedProviderAnswers covers T40 and T60's bounded reads: whatever
// the provider sends past 1 MiB is never read, the answer counts as the
// provider failing (transient), and what was there before stays.
func TestOversizedProviderAnswers(t *testing.T) {
	t.Parallel()

	// A complete, valid-looking refresh answer followed by padding: x/oauth2
	// reads 1 MiB and parses it, so without the limit failing the read, the
	// padding would pass as whitespace and a cut refresh token as a token.
	for _, tc := range []struct {
		name string
		o    *oversized
	}{
		{"json_then_spaces", &oversized{contentType: "application/json", filler: ' ',
			prefix: fixed(`{"access_token":"padded-at","token_type":"Bearer","expires_in":300,"refresh_token":"padded-rt"}`)}},
		{"form_cut_refresh_token", &oversized{contentType: "application/x-www-form-urlencoded", filler: 'R',
			prefix: fixed(`access_token=padded-at&token_type=Bearer&expires_in=300&refresh_token=`)}},
		{"text_plain_cut_refresh_token", &oversized{contentType: "text/plain", filler: 'R',
			prefix: fixed(`access_token=padded-at&token_type=Bearer&expires_in=300&refresh_token=`)}},
		{"content_length_announced", &oversized{contentType: "application/json", filler: ' ', announce: true,
			prefix: fixed(`{"access_token":"padded-at","token_type":"Bearer","expires_in":300,"refresh_token":"padded-rt"}`)}},
		{"error_status_padded", &oversized{status: http.StatusBadGateway, contentType: "text/html", filler: 'x',
			prefix: fixed(`<html>`)}},
	} {
		t.Run("T60_refresh_"+tc.name, func(t *testing.T) {
			t.Parallel()
			rc := newReadCounter()
			e := newEnv(t, withReadCounter(rc))
			id, rec := e.loggedIn()
			e.clock.Advance(6 * time.Minute) // expired: nothing to fall back on
			tc.o.total = hugeAnswer
			e.hook(oidctest.PathToken, tc.o.ServeHTTP)
			_, err := e.h.Refresher().Refresh(t.Context(), id, rec)
			if !errors.Is(err, ErrProviderUnavailable) {
				t.Fatalf("err = %v, want ErrProviderUnavailable", err)
			}
			tc.o.wroteLess(t)
			readBounded(t, rc, oidctest.PathToken)
			stored, err := e.store.Get(t.Context(), id)
			if err != nil || stored.GetRefreshToken() != rec.GetRefreshToken() || stored.GetAccessToken() != rec.GetAccessToken() {
				t.Fatalf("session lost or changed by an oversized answer: %v", err)
			}
			// The provider comes back: the kept refresh token still works.
			e.hook(oidctest.PathToken, nil)
			got, err := e.h.Refresher().Refresh(t.Context(), id, stored)
			if err != nil || got.GetAccessToken() == rec.GetAccessToken() || strings.HasPrefix(got.GetRefreshToken(), "RRRR") {
				t.Fatalf("refresh after the fault: %v", err)
			}
		})
	}

	t.Run("T31_T40_code_exchange_padded", func(t *testing.T) {
		t.Parallel()
		rc := newReadCounter()
		e := newEnv(t, withReadCounter(rc))
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		o := &oversized{contentType: "application/json", filler: ' ', total: hugeAnswer, prefix: e.realAnswer}
		e.hook(oidctest.PathToken, o.ServeHTTP)
		r := b.get(cb)
		wantError(t, r, http.StatusServiceUnavailable, "provider_unavailable")
		o.wroteLess(t)
		readBounded(t, rc, oidctest.PathToken)
		if r.setCookie("__Host-bff") != "" || e.store.creates.Load() != 0 {
			t.Fatal("a session was started from an oversized token answer")
		}
	})

	t.Run("T40_discovery_padded_then_recovers", func(t *testing.T) {
		t.Parallel()
		rc := newReadCounter()
		e := newEnv(t, notStarted(), withReadCounter(rc))
		o := &oversized{contentType: "application/json", filler: ' ', total: hugeAnswer, prefix: e.realAnswer}
		e.hook(oidctest.PathDiscovery, o.ServeHTTP)
		done := make(chan error, 1)
		go func() { done <- e.h.Start(t.Context()) }()
		waitFor(t, func() bool { return strings.Contains(e.logs.String(), "larger than 1 MiB") })
		if e.h.Ready() {
			t.Fatal("ready on an oversized discovery document")
		}
		o.wroteLess(t)
		readBounded(t, rc, oidctest.PathDiscovery)
		e.hook(oidctest.PathDiscovery, nil) // the provider is fixed: no restart needed
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("discovery did not recover")
		}
		if !e.h.Ready() {
			t.Fatal("not ready after the provider was fixed")
		}
	})

	t.Run("T40_logout_key_set_padded_keeps_the_previous_set", func(t *testing.T) {
		t.Parallel()
		rc := newReadCounter()
		e := newEnv(t, withReadCounter(rc))
		id, rec := e.loggedIn()
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: "unrelated"})); r.Status != http.StatusOK {
			t.Fatalf("loading the key set: %d", r.Status)
		}
		o := &oversized{contentType: "application/json", filler: ' ', total: hugeAnswer, prefix: e.realAnswer}
		e.hook(oidctest.PathJWKS, o.ServeHTTP)
		e.clock.Advance(jwksCooldown) // an unknown kid may refetch now
		if r := e.logoutWith(forge(t, attackerKey(t), "unknown-kid", nil, validClaims(e, rec))); r.Status != http.StatusBadRequest {
			t.Fatalf("token under an unknown kid: %d", r.Status)
		}
		o.wroteLess(t)
		readBounded(t, rc, oidctest.PathJWKS)
		// The set loaded before still verifies the provider's tokens.
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: rec.GetSid()})); r.Status != http.StatusOK || e.alive(id) {
			t.Fatalf("valid token after the bad fetch: %d, session alive %v", r.Status, e.alive(id))
		}
	})
}

// TestKeySetFaults covers T62's key handling and T37 end to end, counting
// the key-set requests the provider itself sees.
func TestKeySetFaults(t *testing.T) {
	t.Parallel()

	t.Run("T62_key_set_outage_keeps_cached_keys", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/") // the ID-token verifier loads the set
		id, rec := b.sessionID(), e.mustGet(b.sessionID())
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: "unrelated"})); r.Status != http.StatusOK {
			t.Fatalf("loading the logout key set: %d", r.Status)
		}
		var outage atomic.Int64
		e.hook(oidctest.PathJWKS, func(w http.ResponseWriter, _ *http.Request) {
			outage.Add(1)
			http.Error(w, "down", http.StatusServiceUnavailable)
		})
		e.clock.Advance(due)
		if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); err != nil { // a refreshed ID token, verified
			t.Fatalf("refresh during the key-set outage: %v", err)
		}
		e.browser().login("/") // a new login's ID token
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: rec.GetSid()})); r.Status != http.StatusOK || e.alive(id) {
			t.Fatalf("logout token during the key-set outage: %d", r.Status)
		}
		if n := outage.Load(); n != 0 {
			t.Fatalf("%d key-set requests for keys already held", n)
		}
	})

	t.Run("T62_rotation_during_a_key_set_outage_keeps_the_session", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		if _, err := e.provider.RotateKey(); err != nil {
			t.Fatal(err)
		}
		e.hook(oidctest.PathJWKS, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
		e.clock.Advance(6 * time.Minute) // expired: the refresh must succeed to serve anything
		got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil {
			t.Fatalf("refresh whose ID token is under a key that cannot be fetched: %v", err)
		}
		stored := e.mustGet(id)
		if got.GetAccessToken() == rec.GetAccessToken() || stored.GetRefreshToken() != got.GetRefreshToken() ||
			stored.GetRefreshToken() == rec.GetRefreshToken() || stored.GetIdToken() != rec.GetIdToken() {
			t.Fatal("want the new access and refresh tokens saved and the verified ID token kept")
		}
		if !strings.Contains(e.logs.String(), "key set is unavailable") {
			t.Fatal("the unchecked ID token is not logged")
		}
		// The key set is back: the next refresh checks and takes the new ID token.
		e.hook(oidctest.PathJWKS, nil)
		e.clock.Advance(6 * time.Minute)
		again, err := e.h.Refresher().Refresh(t.Context(), id, stored)
		if err != nil || again.GetIdToken() == rec.GetIdToken() {
			t.Fatalf("refresh after the outage: %v", err)
		}
	})

	t.Run("T62_login_under_a_new_key_during_a_key_set_outage_503", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.hook(oidctest.PathJWKS, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
		b := e.browser()
		r := b.get(b.authorize(b.startLogin("/")))
		wantError(t, r, http.StatusServiceUnavailable, "provider_unavailable")
		if r.setCookie("__Host-bff") != "" || e.store.creates.Load() != 0 {
			t.Fatal("a session without a verified ID token")
		}
		e.hook(oidctest.PathJWKS, nil)
		e.browser().login("/")
	})

	t.Run("T62_rotated_key_one_refetch_for_id_tokens", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.browser().login("/")
		before := e.provider.Stats().JWKSRequests
		if _, err := e.provider.RotateKey(); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			e.browser().login("/") // signed under the new kid
		}
		if n := e.provider.Stats().JWKSRequests - before; n != 1 {
			t.Fatalf("%d key-set requests after one rotation and three logins, want 1", n)
		}
	})

	t.Run("T37_T62_unknown_kids_one_fetch_per_cooldown", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		e.logoutWith(e.mint(oidctest.LogoutToken{Sid: "unrelated"})) // loads the logout key set
		k := attackerKey(t)
		flood := func(n int, tag string) {
			t.Helper()
			var wg sync.WaitGroup
			sem := make(chan struct{}, 16)
			for i := range n {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					if r := e.logoutWith(forge(t, k, fmt.Sprintf("%s-%d", tag, i), nil, validClaims(e, rec))); r.Status != http.StatusBadRequest {
						t.Errorf("forged token %d: %d", i, r.Status)
					}
				})
			}
			wg.Wait()
		}
		jwks := func() int { return e.provider.Stats().JWKSRequests }
		e.clock.Advance(jwksCooldown)
		before := jwks()
		flood(300, "after-cooldown")
		if n := jwks() - before; n != 1 {
			t.Fatalf("%d key-set requests for 300 unknown kids once the cooldown passed, want exactly 1", n)
		}
		e.clock.Advance(jwksCooldown / 2)
		before = jwks()
		flood(100, "inside-cooldown")
		if n := jwks() - before; n != 0 {
			t.Fatalf("%d key-set requests inside the cooldown", n)
		}
		// A real rotation once the cooldown has passed: one refetch, and the token verifies.
		if _, err := e.provider.RotateKey(); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(jwksCooldown / 2)
		before = jwks()
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: rec.GetSid()})); r.Status != http.StatusOK || e.alive(id) {
			t.Fatalf("token under the rotated key: %d", r.Status)
		}
		if n := jwks() - before; n != 1 {
			t.Fatalf("%d key-set requests for the rotated key, want 1", n)
		}
	})
}

// TestClockSkew covers T62's last clause: a provider whose clock is off by
// more than the leeway gets its tokens refused, with a log line that says so.
func TestClockSkew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		skew time.Duration
		log  string
	}{
		{"T62_provider_clock_behind_id_token_expired", -10 * time.Minute, "clock"},
		{"T62_provider_clock_ahead_id_token_from_the_future", 10 * time.Minute, "clock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withProvider(func(c *oidctest.ProviderConfig) {
				now := c.Now
				c.Now = func() time.Time { return now().Add(tc.skew) }
			}))
			b := e.browser()
			r := b.get(b.authorize(b.startLogin("/")))
			wantError(t, r, http.StatusBadRequest, "login_failed")
			if r.setCookie("__Host-bff") != "" || e.store.creates.Load() != 0 {
				t.Fatal("a session was started from a skewed ID token")
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "id token rejected") || !strings.Contains(logs, tc.log) {
				t.Fatalf("no log line naming the clock:\n%s", logs)
			}
		})
	}

	t.Run("T62_small_skew_inside_the_leeway_logs_in", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withProvider(func(c *oidctest.ProviderConfig) {
			now := c.Now
			c.Now = func() time.Time { return now().Add(time.Minute) }
		}))
		e.browser().login("/")
	})

	t.Run("T41_T62_logout_token_from_a_provider_clock_ahead", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		tok := e.mint(oidctest.LogoutToken{Sid: rec.GetSid(), IssuedAt: e.clock.Now().Add(logoutSkew + time.Minute)})
		wantError(t, e.logoutWith(tok), http.StatusBadRequest, "invalid_request")
		if !e.alive(id) || !strings.Contains(e.logs.String(), "iat in the future") {
			t.Fatalf("alive %v; logs:\n%s", e.alive(id), e.logs.String())
		}
	})
}

// mustGet reads a stored session.
func (e *env) mustGet(id session.ID) *sessionpb.Session {
	e.t.Helper()
	rec, err := e.store.Get(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return rec
}

// TestDiscoveryBackoff: retries double from 200 ms and stop growing at 30 s,
// however long the provider stays down.
func TestDiscoveryBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{1, 200 * time.Millisecond}, {2, 400 * time.Millisecond}, {3, 800 * time.Millisecond},
		{8, 25600 * time.Millisecond}, {9, 30 * time.Second}, {10, 30 * time.Second}, {1 << 30, 30 * time.Second},
	} {
		if got := discoveryBackoff(tc.attempt); got != tc.want {
			t.Errorf("discoveryBackoff(%d) = %s, want %s", tc.attempt, got, tc.want)
		}
	}
}

// TestDiscoveryRetries covers T62 at start: not ready while the provider's
// discovery fails, one request per attempt, waits that grow, and ready
// without a restart once it answers.
func TestDiscoveryRetries(t *testing.T) {
	t.Parallel()
	t.Run("T62_down_at_start_backs_off_then_ready", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		var failed atomic.Int64
		e.hook(oidctest.PathDiscovery, func(w http.ResponseWriter, _ *http.Request) {
			failed.Add(1)
			http.Error(w, "down", http.StatusServiceUnavailable)
		})
		done := make(chan error, 1)
		go func() { done <- e.h.Start(t.Context()) }()
		waitFor(t, func() bool { return strings.Count(e.logs.String(), "discovery failed") >= 3 })
		if e.h.Ready() {
			t.Fatal("ready while discovery fails")
		}
		wantError(t, e.browser().get("/bff/login"), http.StatusServiceUnavailable, "provider_unavailable")
		logs := e.logs.String()
		for i, want := range []string{"attempt=1 backoff=200ms", "attempt=2 backoff=400ms", "attempt=3 backoff=800ms"} {
			if !strings.Contains(logs, want) {
				t.Fatalf("retry %d: no %q in\n%s", i+1, want, logs)
			}
		}
		e.hook(oidctest.PathDiscovery, nil)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("discovery did not recover")
		}
		if n, logged := failed.Load(), int64(strings.Count(e.logs.String(), "discovery failed")); n != logged {
			t.Fatalf("%d failed discovery requests but %d logged attempts: retries beyond the schedule", n, logged)
		}
		if !e.h.Ready() || e.provider.Stats().DiscoveryRequests != 1 {
			t.Fatalf("ready %v after %d successful discovery requests", e.h.Ready(), e.provider.Stats().DiscoveryRequests)
		}
		e.browser().login("/")
	})
}

// TestRefreshSaveFirst covers T61's ordering: tokens from a refresh are
// handed out only after the fenced write that stores the new refresh token
// succeeded; a write that fails hands out nothing new.
func TestRefreshSaveFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		advance time.Duration
		wantOld bool
	}{
		{"T61_write_fails_expired_token_error", 6 * time.Minute, false},
		{"T61_write_fails_valid_token_keeps_the_old_one", due, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			id, rec := e.loggedIn()
			e.clock.Advance(tc.advance)
			e.store.failWith("Update", errStoreDown)
			got, err := e.h.Refresher().Refresh(t.Context(), id, rec)
			if e.provider.Stats().RefreshTokenGrants != 1 {
				t.Fatal("the provider was not asked")
			}
			switch {
			case tc.wantOld && (err != nil || got.GetAccessToken() != rec.GetAccessToken()):
				t.Fatalf("valid token, failed write: %v; want the old access token", err)
			case !tc.wantOld && (!errors.Is(err, session.ErrUnavailable) || got != nil):
				t.Fatalf("expired token, failed write: %v; want the store's error and no token", err)
			}
			if !strings.Contains(e.logs.String(), "refreshed tokens could not be saved") {
				t.Fatal("the lost refresh is not logged")
			}
		})
	}
}
