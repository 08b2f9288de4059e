package sessiontest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// DerivedCopier is a store whose storage the suite can write around the
// store, as anyone with write access to Redis could: CopySealedDerived puts
// the sealed derived token that view from holds for fromID and fromProfile
// where view to looks for toID's token of toProfile, without opening it.
type DerivedCopier interface {
	CopySealedDerived(t testing.TB, from, to session.Store, fromID, toID session.ID, fromProfile, toProfile string)
}

func copyDerived(t testing.TB, root, from, to session.Store, fromID, toID session.ID, fromProfile, toProfile string) {
	t.Helper()
	c, ok := root.(DerivedCopier)
	if !ok {
		t.Fatalf("%T must implement sessiontest.DerivedCopier", root)
	}
	c.CopySealedDerived(t, from, to, fromID, toID, fromProfile, toProfile)
}

// derivedToken is a plausible derived token living for life, with a distinctive value.
func derivedToken(now time.Time, value string, life time.Duration) *sessionpb.ClientToken {
	return &sessionpb.ClientToken{
		AccessToken:     value,
		TokenType:       "Bearer",
		Scope:           "orders.read",
		ExpiresAtUnixMs: now.Add(life).UnixMilli(),
		IssuedAtUnixMs:  now.UnixMilli(),
	}
}

func mustPutDerived(t *testing.T, s session.Store, id session.ID, profile string, tok *sessionpb.ClientToken) {
	t.Helper()
	if err := s.PutDerivedToken(t.Context(), id, profile, tok); err != nil {
		t.Fatalf("PutDerivedToken(%s): %v", profile, err)
	}
}

// wantDerived checks that s holds want as id's token of profile, through
// GetDerivedToken and GetWithDerived.
func wantDerived(t *testing.T, s session.Store, id session.ID, profile string, want *sessionpb.ClientToken) {
	t.Helper()
	got, err := s.GetDerivedToken(t.Context(), id, profile)
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("GetDerivedToken(%s) = %v, %v; want %v", profile, got, err, want)
	}
	sess, got, err := s.GetWithDerived(t.Context(), id, profile)
	if err != nil || sess == nil || !proto.Equal(got, want) {
		t.Fatalf("GetWithDerived(%s) = %v, %v, %v; want the session and %v", profile, sess, got, err, want)
	}
}

// wantNoDerived checks that s holds no token of profile for id: not found,
// and nil next to the session (which must exist) in GetWithDerived.
func wantNoDerived(t *testing.T, s session.Store, id session.ID, profile string) {
	t.Helper()
	if got, err := s.GetDerivedToken(t.Context(), id, profile); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("GetDerivedToken(%s) = %v, %v; want ErrNotFound", profile, got, err)
	}
	sess, got, err := s.GetWithDerived(t.Context(), id, profile)
	if err != nil || sess == nil || got != nil {
		t.Fatalf("GetWithDerived(%s) = %v, %v, %v; want the session and no token", profile, sess, got, err)
	}
}

func testDerivedRoundTrip(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	wantNoDerived(t, s, id, "orders")
	want := derivedToken(s.clock.Now(), "derived-orders-1", time.Minute)
	mustPutDerived(t, s, id, "orders", want)
	wantDerived(t, s, id, "orders", want)
	got, err := s.GetDerivedToken(t.Context(), id, "orders")
	if err != nil {
		t.Fatal(err)
	}
	got.AccessToken = "changed by caller"
	wantDerived(t, s, id, "orders", want) // a returned token does not alias the stored one
	again := derivedToken(s.clock.Now(), "derived-orders-2", 2*time.Minute)
	mustPutDerived(t, s, id, "orders", again) // a renewal replaces it
	wantDerived(t, s, id, "orders", again)
}

func testDerivedExpires(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	mustPutDerived(t, s, id, "short", derivedToken(s.clock.Now(), "derived-short", time.Minute))
	long := derivedToken(s.clock.Now(), "derived-long", 10*time.Minute)
	mustPutDerived(t, s, id, "long", long)
	s.advance(t, time.Minute)
	wantNoDerived(t, s, id, "short")
	wantDerived(t, s, id, "long", long) // the later expiry keeps the other profile
	// One already expired is not stored at all.
	mustPutDerived(t, s, id, "old", derivedToken(s.clock.Now(), "derived-old", -time.Second))
	wantNoDerived(t, s, id, "old")
	s.advance(t, 9*time.Minute)
	wantNoDerived(t, s, id, "long")
}

func testDerivedPerProfileAndSession(t *testing.T, s subject) {
	one, two := ID(t, 1), ID(t, 2)
	mustCreate(t, s, one, Record(s.clock.Now()))
	mustCreate(t, s, two, Record(s.clock.Now()))
	tok := map[string]*sessionpb.ClientToken{}
	for _, k := range []string{"1/orders", "1/billing", "2/orders"} {
		tok[k] = derivedToken(s.clock.Now(), "derived-"+k, time.Minute)
	}
	mustPutDerived(t, s, one, "orders", tok["1/orders"])
	wantNoDerived(t, s, one, "billing")
	wantNoDerived(t, s, two, "orders")
	mustPutDerived(t, s, one, "billing", tok["1/billing"])
	mustPutDerived(t, s, two, "orders", tok["2/orders"])
	wantDerived(t, s, one, "orders", tok["1/orders"])
	wantDerived(t, s, one, "billing", tok["1/billing"])
	wantDerived(t, s, two, "orders", tok["2/orders"])
	if err := s.Delete(t.Context(), two); err != nil {
		t.Fatal(err)
	}
	wantDerived(t, s, one, "orders", tok["1/orders"]) // another session's deletion leaves them
}

// testDerivedNeedsSession: a token is stored only next to a live session,
// so one obtained while its session was logged out never outlives it.
func testDerivedNeedsSession(t *testing.T, s subject) {
	id := ID(t, 1)
	tok := derivedToken(s.clock.Now(), "derived-orphan", time.Minute)
	if err := s.PutDerivedToken(t.Context(), id, "orders", tok); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("PutDerivedToken without a session = %v, want ErrNotFound", err)
	}
	if raw := s.raw(t); len(raw) != 0 {
		t.Fatalf("%d values stored for a session that does not exist", len(raw))
	}
	mustCreate(t, s, id, Record(s.clock.Now()))
	wantNoDerived(t, s, id, "orders")
}

// testDerivedDeletedWithSession: every way a session is deleted takes its
// derived tokens with it at once, and a session later created under the
// same ID has none. A session that times out in storage (a TTL) may leave
// them stored until their own expiry, never served.
func testDerivedDeletedWithSession(t *testing.T, s subject) {
	ctx := t.Context()
	gone := func(t *testing.T, id session.ID) {
		t.Helper()
		wantNotFound(t, s, id)
		if sess, tok, err := s.GetWithDerived(ctx, id, "orders"); !errors.Is(err, session.ErrNotFound) || sess != nil || tok != nil {
			t.Fatalf("GetWithDerived = %v, %v, %v; want ErrNotFound", sess, tok, err)
		}
	}
	tests := []struct {
		name     string
		absolute time.Duration
		timeout  bool // ends by a timeout: the tokens may stay (unserved) until they expire
		end      func(t *testing.T, id session.ID, rec *sessionpb.Session)
	}{
		{name: "delete", end: func(t *testing.T, id session.ID, _ *sessionpb.Session) {
			if err := s.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "delete_by_ref", end: func(t *testing.T, _ session.ID, rec *sessionpb.Session) {
			refs, err := s.FindSessions(ctx, rec.Issuer, "", rec.Sid)
			if err != nil || len(refs) != 1 {
				t.Fatalf("FindSessions = %v, %v", refs, err)
			}
			if err := s.DeleteByRef(ctx, refs[0]); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "update_past_absolute_lifetime", absolute: 10 * time.Minute, end: func(t *testing.T, id session.ID, rec *sessionpb.Session) {
			s.advance(t, 11*time.Minute)
			if err := s.Update(ctx, id, rec, rec.Generation); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("Update = %v, want ErrNotFound", err)
			}
		}},
		{name: "get_past_absolute_lifetime", absolute: 10 * time.Minute, end: func(t *testing.T, id session.ID, _ *sessionpb.Session) {
			mustGet(t, s, id) // renews the idle timeout past the absolute lifetime
			s.advance(t, 11*time.Minute)
			wantNotFound(t, s, id)
		}},
		{name: "get_with_derived_past_absolute_lifetime", absolute: 10 * time.Minute, end: func(t *testing.T, id session.ID, _ *sessionpb.Session) {
			mustGet(t, s, id)
			s.advance(t, 11*time.Minute)
			gone(t, id)
		}},
		{name: "idle_timeout", timeout: true, end: func(t *testing.T, id session.ID, _ *sessionpb.Session) {
			s.advance(t, Config().IdleTimeout+time.Second)
		}},
		{name: "absolute_lifetime_timeout", absolute: 10 * time.Minute, timeout: true, end: func(t *testing.T, id session.ID, _ *sessionpb.Session) {
			s.advance(t, 11*time.Minute)
		}},
	}
	for i, tc := range tests { // sequential: the clock is shared
		t.Run(tc.name, func(t *testing.T) {
			id := ID(t, byte(30+i))
			rec := userRecord(s.clock.Now(), "del-"+tc.name, "sid-"+tc.name)
			if tc.absolute > 0 {
				rec.AbsoluteExpiresAtUnixMs = s.clock.Now().Add(tc.absolute).UnixMilli()
			}
			mustCreate(t, s, id, rec)
			for _, p := range []string{"orders", "billing"} {
				mustPutDerived(t, s, id, p, derivedToken(s.clock.Now(), "derived-"+p, time.Hour))
			}
			tc.end(t, id, rec)
			for _, p := range []string{"orders", "billing"} {
				if tok, err := s.GetDerivedToken(ctx, id, p); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("GetDerivedToken(%s) after the session ended = %v, %v; want ErrNotFound", p, tok, err)
				}
			}
			gone(t, id)
			if tc.timeout {
				s.advance(t, time.Hour) // the tokens' expiry
			}
			if raw := s.raw(t); len(raw) != 0 {
				t.Fatalf("%d values left after the session ended", len(raw))
			}
			if tc.timeout {
				return
			}
			mustCreate(t, s, id, Record(s.clock.Now()))
			wantNoDerived(t, s, id, "orders")
			wantNoDerived(t, s, id, "billing")
			if err := s.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// testDerivedCopied (T74): a token's additional data names its session and
// profile, so a sealed token copied into another session's or profile's
// place never opens there, and the store answers as if it were absent.
func testDerivedCopied(t *testing.T, s subject) {
	victim, attacker := ID(t, 1), ID(t, 2)
	mustCreate(t, s, victim, Record(s.clock.Now()))
	mustCreate(t, s, attacker, Record(s.clock.Now()))
	want := derivedToken(s.clock.Now(), "derived-victim-orders", time.Hour)
	mustPutDerived(t, s, victim, "orders", want)
	tests := []struct {
		name    string
		to      session.ID
		profile string
	}{
		{name: "to_another_session", to: attacker, profile: "orders"},
		{name: "to_another_profile", to: victim, profile: "admin"},
		{name: "to_another_session_and_profile", to: attacker, profile: "admin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			copyDerived(t, s.Store, s.Store, s.Store, victim, tc.to, "orders", tc.profile)
			got, err := s.GetDerivedToken(t.Context(), tc.to, tc.profile)
			if !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable) || got != nil {
				t.Fatalf("GetDerivedToken of a copied token = %v, %v; want ErrNotFound and ErrUnreadable", got, err)
			}
			sess, got, err := s.GetWithDerived(t.Context(), tc.to, tc.profile)
			if err != nil || sess == nil || got != nil {
				t.Fatalf("GetWithDerived of a copied token = %v, %v, %v; want the session and no token", sess, got, err)
			}
		})
	}
	wantDerived(t, s, victim, "orders", want)
}

func testDerivedNoPlaintext(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	tok := derivedToken(s.clock.Now(), "derived-secret-token-5a9c", time.Minute)
	mustPutDerived(t, s, id, "orders", tok)
	raw := s.raw(t)
	if len(raw) != 2 {
		t.Fatalf("%d raw values, want the session and its token", len(raw))
	}
	for _, v := range raw {
		if bytes.Contains(v, []byte(tok.AccessToken)) || bytes.Contains(v, []byte("orders.read")) {
			t.Fatal("a derived token is stored in clear")
		}
	}
}

func testDerivedProfileNames(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	tok := derivedToken(s.clock.Now(), "derived-x", time.Minute)
	for _, ok := range []string{"a", "orders_v2-eu", strings.Repeat("z", 64)} {
		mustPutDerived(t, s, id, ok, tok)
		wantDerived(t, s, id, ok, tok)
	}
	for _, bad := range []string{"", "Upper", "with space", "{tag}", "a:b", "ö", strings.Repeat("z", 65)} {
		if err := s.PutDerivedToken(t.Context(), id, bad, tok); err == nil || errors.Is(err, session.ErrUnavailable) {
			t.Errorf("PutDerivedToken(%q) = %v, want a refusal", bad, err)
		}
		if _, err := s.GetDerivedToken(t.Context(), id, bad); err == nil || errors.Is(err, session.ErrUnavailable) {
			t.Errorf("GetDerivedToken(%q) = %v, want a refusal", bad, err)
		}
		if sess, got, err := s.GetWithDerived(t.Context(), id, bad); err == nil || errors.Is(err, session.ErrUnavailable) || sess != nil || got != nil {
			t.Errorf("GetWithDerived(%q) = %v, %v, %v; want a refusal", bad, sess, got, err)
		}
		if l, err := s.TryLock(t.Context(), session.DerivedTokenLock(id, bad)); err == nil || errors.Is(err, session.ErrLocked) {
			if l != nil {
				_ = l.Release(t.Context())
			}
			t.Errorf("TryLock(DerivedTokenLock(%q)) = %v, want a refusal", bad, err)
		}
	}
	mustGet(t, s, id)
}

// testGetWithDerived: GetWithDerived is Get plus the token: the same
// record, the same errors, and it renews the idle timeout as Get does.
func testGetWithDerived(t *testing.T, s subject) {
	id := ID(t, 1)
	if sess, tok, err := s.GetWithDerived(t.Context(), id, "orders"); !errors.Is(err, session.ErrNotFound) || sess != nil || tok != nil {
		t.Fatalf("GetWithDerived of an unknown session = %v, %v, %v; want ErrNotFound", sess, tok, err)
	}
	rec := Record(s.clock.Now())
	mustCreate(t, s, id, rec)
	want := derivedToken(s.clock.Now(), "derived-orders", 2*time.Hour)
	mustPutDerived(t, s, id, "orders", want)
	sess, tok, err := s.GetWithDerived(t.Context(), id, "orders")
	if err != nil || !proto.Equal(sess, mustGet(t, s, id)) || !proto.Equal(sess, rec) || !proto.Equal(tok, want) {
		t.Fatalf("GetWithDerived = %v, %v, %v; want Get's record and the token", sess, tok, err)
	}
	idle := Config().IdleTimeout
	for range 3 { // 3 × (idle - 1m) > idle: only GetWithDerived's renewal keeps it alive
		s.advance(t, idle-time.Minute)
		if _, tok, err := s.GetWithDerived(t.Context(), id, "orders"); err != nil || !proto.Equal(tok, want) {
			t.Fatalf("GetWithDerived after %s idle = %v, %v", idle-time.Minute, tok, err)
		}
	}
	s.advance(t, idle+time.Second)
	if _, _, err := s.GetWithDerived(t.Context(), id, "orders"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("GetWithDerived after the idle timeout = %v, want ErrNotFound", err)
	}
}

func testDerivedLock(t *testing.T, s subject) {
	one, two := ID(t, 1), ID(t, 2)
	key := session.DerivedTokenLock(one, "orders")
	l := mustLock(t, s, key)
	wantLocked(t, s, key)
	for _, other := range []session.LockKey{
		session.SessionLock(one), session.DerivedTokenLock(one, "billing"), session.DerivedTokenLock(two, "orders"),
		session.ClientTokenLock("orders"),
	} {
		mustLock(t, s, other) // independent of the session's own lock and of other profiles and sessions
	}
	if err := l.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustLock(t, s, key)
}

func testDerivedRotation(t *testing.T, s subject) {
	k1, k2 := session.Key{ID: "k1", Secret: key1}, session.Key{ID: "k2", Secret: key2}
	old := s.rekey(t, ring(t, k1))
	id := ID(t, 1)
	mustCreate(t, old, id, Record(s.clock.Now()))
	want := derivedToken(s.clock.Now(), "derived-k1", time.Hour)
	mustPutDerived(t, old, id, "orders", want)
	if got, err := s.rekey(t, ring(t, k2, k1)).GetDerivedToken(t.Context(), id, "orders"); err != nil || !proto.Equal(got, want) {
		t.Fatalf("with k1 kept in the ring: %v, %v", got, err)
	}
	_, err := s.rekey(t, ring(t, k2)).GetDerivedToken(t.Context(), id, "orders")
	if !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable) || errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("with k1 removed = %v, want ErrNotFound and ErrUnreadable", err)
	}
}

// testFrontendDerived: derived tokens are per frontend: the same session ID
// and profile are two tokens in two views, a token copied from one view to
// the other does not open, and a deletion in one view leaves the other's.
func testFrontendDerived(t *testing.T, f frontends) {
	id := ID(t, 1)
	mustCreate(t, f.a, id, subjectRecord(f.clock.Now(), "a"))
	mustCreate(t, f.b, id, subjectRecord(f.clock.Now(), "b"))
	ta := derivedToken(f.clock.Now(), "derived-a", time.Hour)
	mustPutDerived(t, f.a, id, "orders", ta)
	wantNoDerived(t, f.b, id, "orders")
	copyDerived(t, f.root, f.a, f.b, id, id, "orders", "orders")
	if got, err := f.b.GetDerivedToken(t.Context(), id, "orders"); !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable) {
		t.Fatalf("B reads A's token copied into its place: %v, %v", got, err)
	}
	tb := derivedToken(f.clock.Now(), "derived-b", time.Hour)
	mustPutDerived(t, f.b, id, "orders", tb)
	wantDerived(t, f.a, id, "orders", ta)
	wantDerived(t, f.b, id, "orders", tb)
	if err := f.b.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	wantDerived(t, f.a, id, "orders", ta)
	mustLock(t, f.a, session.DerivedTokenLock(id, "orders"))
	mustLock(t, f.b, session.DerivedTokenLock(id, "orders")) // A's holder does not hold B's lock
	wantLocked(t, f.a, session.DerivedTokenLock(id, "orders"))
}
