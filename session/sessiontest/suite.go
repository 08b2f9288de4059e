package sessiontest

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// Test keys. Never use them outside tests.
const (
	key1    = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	key2    = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
	hashKey = "c3VpdGUtaGFzaC1rZXktMzItYnl0ZXMtbG9uZy4uLi4="
)

// Epoch is where every suite clock starts.
var Epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Config is the configuration a store under RunStoreTests must be built
// from (factories may change only KeyPrefix): the suite's timings and keys.
func Config() session.Config {
	c := session.DefaultConfig()
	c.IdleTimeout = 30 * time.Minute
	c.AbsoluteLifetime = 2 * time.Hour
	c.LoginStateTTL = 10 * time.Minute
	c.LockTTL = 300 * time.Millisecond
	c.LockPollInterval = 50 * time.Millisecond
	c.EncryptionKeys = session.KeyList{{ID: "k1", Secret: key1}}
	c.HashKey = hashKey
	return c
}

// KeyRing is Config's key ring.
func KeyRing(t testing.TB) *session.KeyRing {
	t.Helper()
	c := Config()
	r, err := session.NewKeyRing(c.EncryptionKeys, c.HashKey)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Rekeyer is a store that can be reopened over the same records with another
// key ring; the rotation tests need it.
type Rekeyer interface {
	WithKeyRing(ring *session.KeyRing) session.Store
}

// RawDumper exposes every value a store holds, so the suite can prove that
// nothing is stored in the clear and that expired records are deleted.
type RawDumper interface {
	RawValues(t testing.TB) [][]byte
}

// Elapser is a store whose storage keeps its own time (Redis TTLs): Elapse
// makes d pass there too. Stores that run only on the injected clock need not
// implement it.
type Elapser interface {
	Elapse(t testing.TB, d time.Duration)
}

// LockTimer is a store that can be reopened over the same storage with
// other lock timings; the wake-up tests need a poll interval longer than
// their deadline, so only the release signal can end a wait.
type LockTimer interface {
	WithLockTiming(ttl, poll time.Duration) session.Store
}

// subject is one store under test and its clock.
type subject struct {
	session.Store
	clock *Clock
}

// advance moves the injected clock, and the storage's own clock if it has one.
func (s subject) advance(t testing.TB, d time.Duration) {
	t.Helper()
	s.clock.Advance(d)
	if e, ok := s.Store.(Elapser); ok {
		e.Elapse(t, d)
	}
}

func (s subject) raw(t testing.TB) [][]byte {
	t.Helper()
	d, ok := s.Store.(RawDumper)
	if !ok {
		t.Fatalf("%T must implement sessiontest.RawDumper", s.Store)
	}
	return d.RawValues(t)
}

func (s subject) rekey(t testing.TB, ring *session.KeyRing) session.Store {
	t.Helper()
	r, ok := s.Store.(Rekeyer)
	if !ok {
		t.Fatalf("%T must implement sessiontest.Rekeyer", s.Store)
	}
	return r.WithKeyRing(ring)
}

// RunStoreTests is the contract every Store honours. newStore must return a
// fresh, empty store built from Config() on the given clock; each subtest
// calls it once and runs in parallel with the others.
func RunStoreTests(t *testing.T, newStore func(t *testing.T, now func() time.Time) session.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s subject)
	}{
		{"create_then_get_round_trips", testCreateGet},
		{"create_fills_lifetime", testCreateFills},
		{"create_overwrites", testCreateOverwrites},
		{"create_past_absolute_lifetime_fails", testCreatePast},
		{"unknown_id_not_found", testUnknown},
		{"ids_are_isolated", testIsolated},
		{"update_compare_and_set", testUpdateCAS},
		{"update_absent_not_found", testUpdateAbsent},
		{"update_concurrent_one_winner", testUpdateConcurrent},
		{"update_past_absolute_lifetime_deletes", testUpdatePast},
		{"delete", testDelete},
		{"idle_timeout_slides", testIdleSlides},
		{"idle_timeout_expires", testIdleExpires},
		{"absolute_lifetime_expires_and_deletes", testAbsolute},
		{"inspect_round_trips", testInspectRoundTrips},
		{"inspect_does_not_slide", testInspectDoesNotSlide},
		{"inspect_sees_get_and_update_renew", testInspectSeesGetSlide},
		{"inspect_capped_by_absolute_expiry", testInspectCappedByAbsolute},
		{"inspect_not_found", testInspectNotFound},
		{"login_state_one_time", testLoginOneTime},
		{"T71_login_state_bound_to_its_browser", testLoginOtherBrowser},
		{"login_state_concurrent_take_one_winner", testLoginConcurrent},
		{"login_state_expires", testLoginExpires},
		{"login_state_unknown_or_empty", testLoginUnknown},
		{"login_state_not_a_session", testLoginNotSession},
		{"key_rotation", testRotation},
		{"removed_key_not_found", testRemovedKey},
		{"nothing_stored_in_clear", testNoPlaintext},
		{"lock_exclusive_until_released", testLockExclusive},
		{"lock_stale_release_keeps_the_new_holder", testLockStaleRelease},
		{"lock_renews_while_held", testLockRenews},
		{"lock_keys_independent", testLockKeysIndependent},
		{"lock_wait_absent_returns", testLockWaitAbsent},
		{"lock_wait_woken_by_release", testLockWaitWoken},
		{"lock_wait_honours_context", testLockWaitContext},
		{"client_token_round_trip", testClientTokenRoundTrip},
		{"client_token_expires", testClientTokenExpires},
		{"client_token_names", testClientTokenNames},
		{"client_token_not_in_clear", testClientTokenNoPlaintext},
		{"index_finds_by_user_and_sid", testIndexFind},
		{"index_follows_deletes", testIndexDelete},
		{"index_prunes_idle_expired", testIndexIdle},
		{"use_once", testUseOnce},
		{"derived_token_round_trip", testDerivedRoundTrip},
		{"derived_token_expires", testDerivedExpires},
		{"derived_token_per_profile_and_session", testDerivedPerProfileAndSession},
		{"derived_token_needs_its_session", testDerivedNeedsSession},
		{"derived_tokens_deleted_with_the_session", testDerivedDeletedWithSession},
		{"T74_derived_token_copied_does_not_open", testDerivedCopied},
		{"derived_token_not_in_clear", testDerivedNoPlaintext},
		{"derived_token_profile_names", testDerivedProfileNames},
		{"get_with_derived_is_get_plus_token", testGetWithDerived},
		{"derived_token_lock", testDerivedLock},
		{"derived_token_key_rotation", testDerivedRotation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(Epoch)
			tc.run(t, subject{Store: newStore(t, clock.Now), clock: clock})
		})
	}
}

// ID is a fixed test session ID drawn from seed.
func ID(t testing.TB, seed byte) session.ID {
	t.Helper()
	id, err := session.NewID(bytes.NewReader(bytes.Repeat([]byte{seed}, session.IDLen)))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Record is a plausible session record, created now, with distinctive tokens.
func Record(now time.Time) *sessionpb.Session {
	return &sessionpb.Session{
		SchemaVersion:              1,
		Issuer:                     "https://idp.example.com",
		Subject:                    "suite-subject-7f3a",
		Sid:                        "suite-sid-91c2",
		AccessToken:                "suite-access-token-4d1e",
		RefreshToken:               "suite-refresh-token-b8a0",
		IdToken:                    "suite-id-token-c6f9",
		TokenType:                  "Bearer",
		AccessTokenExpiresAtUnixMs: now.Add(5 * time.Minute).UnixMilli(),
		CreatedAtUnixMs:            now.UnixMilli(),
		AbsoluteExpiresAtUnixMs:    now.Add(Config().AbsoluteLifetime).UnixMilli(),
		ClaimsJson:                 []byte(`{"sub":"suite-subject-7f3a","email":"suite@example.com"}`),
		Scope:                      "openid profile",
	}
}

func mustCreate(t *testing.T, s session.Store, id session.ID, rec *sessionpb.Session) {
	t.Helper()
	if err := s.Create(t.Context(), id, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

func mustGet(t *testing.T, s session.Store, id session.ID) *sessionpb.Session {
	t.Helper()
	got, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return got
}

func wantNotFound(t *testing.T, s session.Store, id session.ID) {
	t.Helper()
	if _, err := s.Get(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
}

func testCreateGet(t *testing.T, s subject) {
	id := ID(t, 1)
	rec := Record(s.clock.Now())
	mustCreate(t, s, id, rec)
	if rec.Generation != 1 {
		t.Errorf("after Create, record generation = %d, want 1", rec.Generation)
	}
	got := mustGet(t, s, id)
	if !proto.Equal(got, rec) {
		t.Errorf("Get = %v\nwant %v", got, rec)
	}
	got.AccessToken = "changed by caller"
	if again := mustGet(t, s, id); again.AccessToken != rec.AccessToken {
		t.Error("a returned record aliases the stored one")
	}
}

func testCreateFills(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, &sessionpb.Session{Subject: "u"})
	got := mustGet(t, s, id)
	now := s.clock.Now()
	if got.SchemaVersion != 1 || got.CreatedAtUnixMs != now.UnixMilli() ||
		got.AbsoluteExpiresAtUnixMs != now.Add(Config().AbsoluteLifetime).UnixMilli() {
		t.Errorf("filled = schema %d created %d absolute %d", got.SchemaVersion, got.CreatedAtUnixMs, got.AbsoluteExpiresAtUnixMs)
	}
}

func testCreateOverwrites(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	rec := Record(s.clock.Now())
	rec.AccessToken = "second"
	mustCreate(t, s, id, rec)
	if got := mustGet(t, s, id); got.AccessToken != "second" || got.Generation != 1 {
		t.Errorf("got token %q generation %d", got.AccessToken, got.Generation)
	}
}

func testCreatePast(t *testing.T, s subject) {
	id := ID(t, 1)
	rec := Record(s.clock.Now())
	rec.AbsoluteExpiresAtUnixMs = s.clock.Now().Add(-time.Second).UnixMilli()
	if err := s.Create(t.Context(), id, rec); err == nil {
		t.Fatal("Create of an expired record succeeded")
	}
	wantNotFound(t, s, id)
}

func testUnknown(t *testing.T, s subject) {
	mustCreate(t, s, ID(t, 1), Record(s.clock.Now()))
	wantNotFound(t, s, ID(t, 2))
	if err := s.Update(t.Context(), ID(t, 2), Record(s.clock.Now()), 1); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Update unknown = %v, want ErrNotFound", err)
	}
}

func testIsolated(t *testing.T, s subject) {
	a, b := Record(s.clock.Now()), Record(s.clock.Now())
	a.Subject, b.Subject = "a", "b"
	mustCreate(t, s, ID(t, 1), a)
	mustCreate(t, s, ID(t, 2), b)
	if err := s.Delete(t.Context(), ID(t, 1)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, ID(t, 2)); got.Subject != "b" {
		t.Errorf("subject = %q", got.Subject)
	}
	wantNotFound(t, s, ID(t, 1))
}

func testUpdateCAS(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	rec := mustGet(t, s, id)
	rec.AccessToken = "refreshed"
	if err := s.Update(t.Context(), id, rec, rec.Generation); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if rec.Generation != 2 {
		t.Errorf("after Update, record generation = %d, want 2", rec.Generation)
	}
	stale := Record(s.clock.Now())
	stale.AccessToken = "stale"
	stale.Generation = 1
	if err := s.Update(t.Context(), id, stale, 1); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("stale Update = %v, want ErrConflict", err)
	}
	if stale.Generation != 1 {
		t.Errorf("a failed Update changed the caller's generation to %d", stale.Generation)
	}
	if got := mustGet(t, s, id); got.AccessToken != "refreshed" || got.Generation != 2 {
		t.Errorf("got token %q generation %d, want refreshed 2", got.AccessToken, got.Generation)
	}
}

func testUpdateAbsent(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	if err := s.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(t.Context(), id, Record(s.clock.Now()), 1); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Update after Delete = %v, want ErrNotFound", err)
	}
	wantNotFound(t, s, id) // a failed Update never resurrects a session
}

func testUpdateConcurrent(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	const n = 16
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rec := Record(s.clock.Now())
			rec.AccessToken = "writer-" + string(rune('a'+i))
			switch err := s.Update(t.Context(), id, rec, 1); {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, session.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != n-1 {
		t.Fatalf("wins %d conflicts %d, want 1 and %d", wins.Load(), conflicts.Load(), n-1)
	}
	if got := mustGet(t, s, id); got.Generation != 2 {
		t.Errorf("generation %d, want 2", got.Generation)
	}
}

func testUpdatePast(t *testing.T, s subject) {
	id := ID(t, 1)
	rec := Record(s.clock.Now())
	rec.AbsoluteExpiresAtUnixMs = s.clock.Now().Add(10 * time.Minute).UnixMilli()
	mustCreate(t, s, id, rec)
	s.advance(t, 11*time.Minute)
	if err := s.Update(t.Context(), id, rec, 1); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Update past absolute lifetime = %v, want ErrNotFound", err)
	}
	if raw := s.raw(t); len(raw) != 0 {
		t.Errorf("%d records left after an expired Update", len(raw))
	}
}

func testDelete(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	for range 2 { // deleting an absent session is not an error
		if err := s.Delete(t.Context(), id); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	wantNotFound(t, s, id)
	if raw := s.raw(t); len(raw) != 0 {
		t.Errorf("%d records left after Delete", len(raw))
	}
}

func testIdleSlides(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	idle := Config().IdleTimeout
	for range 3 { // 3 × (idle - 1m) > idle: only sliding keeps it alive
		s.advance(t, idle-time.Minute)
		mustGet(t, s, id)
	}
}

func testIdleExpires(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	s.advance(t, Config().IdleTimeout+time.Second)
	wantNotFound(t, s, id)
}

func testAbsolute(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	step := Config().IdleTimeout / 2
	deadline := s.clock.Now().Add(Config().AbsoluteLifetime)
	for s.clock.Now().Add(step).Before(deadline) { // busy: never idle
		s.advance(t, step)
		mustGet(t, s, id)
	}
	s.advance(t, deadline.Sub(s.clock.Now()))
	wantNotFound(t, s, id)
	if raw := s.raw(t); len(raw) != 0 {
		t.Errorf("%d records left after the absolute lifetime", len(raw))
	}
}

func loginState() *sessionpb.LoginState {
	return &sessionpb.LoginState{
		SchemaVersion:   1,
		Nonce:           "suite-nonce-5e2b",
		CodeVerifier:    "suite-verifier-0a7d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		ReturnUrl:       "/app/orders?x=1",
		BrowserBinding:  []byte("binding"),
		CreatedAtUnixMs: Epoch.UnixMilli(),
	}
}

// testBrowser is the login-transaction secret the suite's logins are bound to.
const testBrowser = "suite-browser-secret-77c1"

// testLoginOtherBrowser (T71): a callback with the right state but another
// browser's secret, or none, finds nothing and consumes nothing, so the
// browser that started the login still completes it.
func testLoginOtherBrowser(t *testing.T, s subject) {
	want := loginState()
	if err := s.PutLoginState(t.Context(), "state-1", testBrowser, want); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"another-browser", "", testBrowser + "x", "suite-browser-secret-77c"} {
		if _, err := s.TakeLoginState(t.Context(), "state-1", b); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Take with browser %q = %v, want ErrNotFound", b, err)
		}
	}
	got, err := s.TakeLoginState(t.Context(), "state-1", testBrowser)
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("the owner's Take after foreign ones = %v, %v", got, err)
	}
	if err := s.PutLoginState(t.Context(), "state-2", "", want); err == nil {
		t.Error("PutLoginState without a browser secret succeeded")
	}
}

func testLoginOneTime(t *testing.T, s subject) {
	want := loginState()
	if err := s.PutLoginState(t.Context(), "state-1", testBrowser, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeLoginState(t.Context(), "state-1", testBrowser)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("Take = %v, want %v", got, want)
	}
	if _, err := s.TakeLoginState(t.Context(), "state-1", testBrowser); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("second Take = %v, want ErrNotFound", err)
	}
}

func testLoginConcurrent(t *testing.T, s subject) {
	if err := s.PutLoginState(t.Context(), "state-1", testBrowser, loginState()); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wins, misses atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			switch _, err := s.TakeLoginState(t.Context(), "state-1", testBrowser); {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, session.ErrNotFound):
				misses.Add(1)
			default:
				t.Errorf("Take: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || misses.Load() != n-1 {
		t.Fatalf("wins %d misses %d, want 1 and %d", wins.Load(), misses.Load(), n-1)
	}
}

func testLoginExpires(t *testing.T, s subject) {
	for _, st := range []string{"state-1", "state-2"} {
		if err := s.PutLoginState(t.Context(), st, testBrowser, loginState()); err != nil {
			t.Fatal(err)
		}
	}
	s.advance(t, Config().LoginStateTTL-time.Second)
	if _, err := s.TakeLoginState(t.Context(), "state-1", testBrowser); err != nil {
		t.Fatalf("Take before TTL: %v", err)
	}
	s.advance(t, 2*time.Second)
	if _, err := s.TakeLoginState(t.Context(), "state-2", testBrowser); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Take after TTL = %v, want ErrNotFound", err)
	}
}

func testLoginUnknown(t *testing.T, s subject) {
	if err := s.PutLoginState(t.Context(), "state-1", testBrowser, loginState()); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"state-2", "", "STATE-1", string(bytes.Repeat([]byte("a"), 4096))} {
		if _, err := s.TakeLoginState(t.Context(), st, testBrowser); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Take(%.10q) = %v, want ErrNotFound", st, err)
		}
	}
	if err := s.PutLoginState(t.Context(), "", testBrowser, loginState()); err == nil {
		t.Error("PutLoginState with an empty state succeeded")
	}
}

// testLoginNotSession: a state string that equals an ID's cookie form must not
// reach the session (different key spaces, different additional data).
func testLoginNotSession(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	if _, err := s.TakeLoginState(t.Context(), id.String(), testBrowser); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Take(session id) = %v, want ErrNotFound", err)
	}
	mustGet(t, s, id)
}

func ring(t *testing.T, keys ...session.Key) *session.KeyRing {
	t.Helper()
	r, err := session.NewKeyRing(keys, hashKey)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testRotation(t *testing.T, s subject) {
	k1, k2 := session.Key{ID: "k1", Secret: key1}, session.Key{ID: "k2", Secret: key2}
	old := s.rekey(t, ring(t, k1))
	id := ID(t, 1)
	mustCreate(t, old, id, Record(s.clock.Now()))

	rotated := s.rekey(t, ring(t, k2, k1)) // new primary, old key kept
	rec := mustGet(t, rotated, id)
	rec.AccessToken = "sealed-by-k2"
	if err := rotated.Update(t.Context(), id, rec, rec.Generation); err != nil {
		t.Fatalf("Update under the new primary: %v", err)
	}
	onlyNew := s.rekey(t, ring(t, k2)) // rewritten records no longer need k1
	if got := mustGet(t, onlyNew, id); got.AccessToken != "sealed-by-k2" {
		t.Errorf("token %q", got.AccessToken)
	}
}

// testRemovedKey documents the choice: a record sealed under a key that has
// left the ring reads as ErrNotFound (wrapping ErrUnreadable, so logs say
// why). It can never be opened again, so the session is over.
func testRemovedKey(t *testing.T, s subject) {
	k1, k2 := session.Key{ID: "k1", Secret: key1}, session.Key{ID: "k2", Secret: key2}
	id := ID(t, 1)
	mustCreate(t, s.rekey(t, ring(t, k1)), id, Record(s.clock.Now()))
	_, err := s.rekey(t, ring(t, k2)).Get(t.Context(), id)
	if !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable) {
		t.Fatalf("Get = %v, want ErrNotFound and ErrUnreadable", err)
	}
	if errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Get = %v: a removed key is not an outage", err)
	}
}

func testNoPlaintext(t *testing.T, s subject) {
	id := ID(t, 1)
	rec := Record(s.clock.Now())
	mustCreate(t, s, id, rec)
	ls := loginState()
	if err := s.PutLoginState(t.Context(), "suite-state-value-e4f1", testBrowser, ls); err != nil {
		t.Fatal(err)
	}
	raw := s.raw(t)
	if len(raw) != 2 {
		t.Fatalf("%d raw values, want 2", len(raw))
	}
	secrets := [][]byte{
		[]byte(rec.AccessToken), []byte(rec.RefreshToken), []byte(rec.IdToken), []byte(rec.Subject),
		[]byte(rec.Sid), []byte("suite@example.com"), []byte(id.String()), id[:],
		[]byte(ls.Nonce), []byte(ls.CodeVerifier), []byte(ls.ReturnUrl), []byte("suite-state-value-e4f1"),
	}
	for _, v := range raw {
		for _, sec := range secrets {
			if bytes.Contains(v, sec) {
				t.Errorf("stored bytes contain %q", sec)
			}
		}
	}
}
