package sessiontest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

func (s subject) withLockTiming(t *testing.T, ttl, poll time.Duration) session.Store {
	t.Helper()
	l, ok := s.Store.(LockTimer)
	if !ok {
		t.Fatalf("%T must implement sessiontest.LockTimer", s.Store)
	}
	return l.WithLockTiming(ttl, poll)
}

func mustLock(t *testing.T, s session.Store, key session.LockKey) *session.Lease {
	t.Helper()
	l, err := s.TryLock(t.Context(), key)
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

func wantLocked(t *testing.T, s session.Store, key session.LockKey) {
	t.Helper()
	if l, err := s.TryLock(t.Context(), key); !errors.Is(err, session.ErrLocked) {
		if l != nil {
			_ = l.Release(context.Background())
		}
		t.Fatalf("TryLock on a held lock: %v, want ErrLocked", err)
	}
}

func testLockExclusive(t *testing.T, s subject) {
	key := session.SessionLock(ID(t, 1))
	l := mustLock(t, s, key)
	wantLocked(t, s, key)
	if err := l.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(t.Context()); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	mustLock(t, s, key)
}

func testLockStaleRelease(t *testing.T, s subject) {
	key := session.SessionLock(ID(t, 1))
	stale := mustLock(t, s, key)
	s.advance(t, Config().LockTTL+time.Millisecond) // the holder stopped renewing long enough
	mustLock(t, s, key)
	select {
	case <-stale.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("a lease whose lock was taken over is not marked lost")
	}
	if err := stale.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantLocked(t, s, key) // the stale holder's release left the new holder's lock alone
}

func testLockRenews(t *testing.T, s subject) {
	key := session.ClientTokenLock("renewed")
	l := mustLock(t, s, key)
	time.Sleep(3 * Config().LockTTL) // real time: Redis TTLs run on it
	wantLocked(t, s, key)
	select {
	case <-l.Lost():
		t.Fatal("a renewed lease was marked lost")
	default:
	}
}

func testLockKeysIndependent(t *testing.T, s subject) {
	for _, k := range []session.LockKey{
		session.SessionLock(ID(t, 1)), session.SessionLock(ID(t, 2)),
		session.ClientTokenLock("a"), session.ClientTokenLock("b"),
	} {
		mustLock(t, s, k)
	}
	if _, err := s.TryLock(t.Context(), session.ClientTokenLock("Not Valid")); err == nil || errors.Is(err, session.ErrLocked) {
		t.Fatalf("lock with an invalid client token name: %v", err)
	}
}

func testLockWaitAbsent(t *testing.T, s subject) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitUnlock(ctx, session.SessionLock(ID(t, 1))); err != nil {
		t.Fatalf("WaitUnlock on a free lock: %v", err)
	}
}

func testLockWaitWoken(t *testing.T, s subject) {
	// Polling every 20 s and a 5 s deadline: only the release can end the wait in time.
	st := s.withLockTiming(t, 30*time.Second, 20*time.Second)
	key := session.SessionLock(ID(t, 1))
	l := mustLock(t, st, key)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			errs[i] = st.WaitUnlock(ctx, key)
		})
	}
	time.Sleep(200 * time.Millisecond) // let the waiters start waiting
	if err := l.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("waiter %d was not woken by the release: %v", i, err)
		}
	}
}

func testLockWaitContext(t *testing.T, s subject) {
	st := s.withLockTiming(t, 30*time.Second, 20*time.Second)
	key := session.SessionLock(ID(t, 1))
	mustLock(t, st, key)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := st.WaitUnlock(ctx, key); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitUnlock past its deadline: %v", err)
	}
}

func clientToken(now time.Time, life time.Duration) *sessionpb.ClientToken {
	return &sessionpb.ClientToken{
		AccessToken:     "cc-suite-secret-token-77f3",
		TokenType:       "Bearer",
		Scope:           "api.read",
		ExpiresAtUnixMs: now.Add(life).UnixMilli(),
		IssuedAtUnixMs:  now.UnixMilli(),
	}
}

func testClientTokenRoundTrip(t *testing.T, s subject) {
	if _, err := s.GetClientToken(t.Context(), "default"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("absent client token: %v", err)
	}
	want := clientToken(s.clock.Now(), time.Minute)
	if err := s.PutClientToken(t.Context(), "default", want); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetClientToken(t.Context(), "default")
	if err != nil || got.GetAccessToken() != want.AccessToken || got.GetExpiresAtUnixMs() != want.ExpiresAtUnixMs || got.GetScope() != "api.read" {
		t.Fatalf("round trip: %v %v", got, err)
	}
}

func testClientTokenExpires(t *testing.T, s subject) {
	if err := s.PutClientToken(t.Context(), "default", clientToken(s.clock.Now(), time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.advance(t, time.Minute)
	if _, err := s.GetClientToken(t.Context(), "default"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("expired client token: %v", err)
	}
	// One already expired is not stored at all.
	if err := s.PutClientToken(t.Context(), "old", clientToken(s.clock.Now(), -time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClientToken(t.Context(), "old"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("client token stored past its expiry: %v", err)
	}
}

func testClientTokenNames(t *testing.T, s subject) {
	a, b := clientToken(s.clock.Now(), time.Minute), clientToken(s.clock.Now(), time.Minute)
	b.AccessToken = "cc-other"
	if err := s.PutClientToken(t.Context(), "a", a); err != nil {
		t.Fatal(err)
	}
	if err := s.PutClientToken(t.Context(), "b", b); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetClientToken(t.Context(), "a"); err != nil || got.GetAccessToken() != a.AccessToken {
		t.Fatalf("a: %v", err)
	}
	for _, bad := range []string{"", "Upper", "with space", "{tag}", string(make([]byte, 65))} {
		if err := s.PutClientToken(t.Context(), bad, a); err == nil {
			t.Errorf("PutClientToken(%q) accepted an invalid name", bad)
		}
		if _, err := s.GetClientToken(t.Context(), bad); err == nil || errors.Is(err, session.ErrUnavailable) {
			t.Errorf("GetClientToken(%q): %v", bad, err)
		}
	}
}

func testClientTokenNoPlaintext(t *testing.T, s subject) {
	tok := clientToken(s.clock.Now(), time.Minute)
	if err := s.PutClientToken(t.Context(), "default", tok); err != nil {
		t.Fatal(err)
	}
	raw := s.raw(t)
	if len(raw) != 1 {
		t.Fatalf("%d raw values, want 1", len(raw))
	}
	if string(raw[0]) == "" || bytes.Contains(raw[0], []byte(tok.AccessToken)) {
		t.Fatal("the client token is stored in clear")
	}
}
