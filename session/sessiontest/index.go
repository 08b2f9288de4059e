package sessiontest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// userRecord is Record for another user and provider session.
func userRecord(now time.Time, sub, sid string) *sessionpb.Session {
	r := Record(now)
	r.Subject, r.Sid = sub, sid
	return r
}

// find lists the subject/sid of every session a search finds, read back
// through GetByRef.
func find(t *testing.T, s session.Store, sub, sid string) []string {
	t.Helper()
	refs, err := s.FindSessions(t.Context(), "https://idp.example.com", sub, sid)
	if err != nil {
		t.Fatalf("FindSessions: %v", err)
	}
	var got []string
	for _, ref := range refs {
		rec, err := s.GetByRef(t.Context(), ref)
		if err != nil {
			t.Fatalf("GetByRef of a found session: %v", err)
		}
		got = append(got, rec.GetSubject()+"/"+rec.GetSid())
	}
	slices.Sort(got)
	return got
}

func testIndexFind(t *testing.T, s subject) {
	now := s.clock.Now()
	mustCreate(t, s, ID(t, 1), userRecord(now, "alice", "op-1"))
	mustCreate(t, s, ID(t, 2), userRecord(now, "alice", "op-2"))
	mustCreate(t, s, ID(t, 3), userRecord(now, "bob", "op-3"))
	noSID := userRecord(now, "bob", "")
	mustCreate(t, s, ID(t, 4), noSID)
	if got := find(t, s, "alice", ""); !slices.Equal(got, []string{"alice/op-1", "alice/op-2"}) {
		t.Fatalf("alice's sessions: %v", got)
	}
	if got := find(t, s, "", "op-3"); !slices.Equal(got, []string{"bob/op-3"}) {
		t.Fatalf("sessions of op-3: %v", got)
	}
	if got := find(t, s, "bob", ""); len(got) != 2 {
		t.Fatalf("bob's sessions: %v", got)
	}
	refs, err := s.FindSessions(t.Context(), "https://other.example.com", "alice", "")
	if err != nil || len(refs) != 0 {
		t.Fatalf("another issuer's alice: %v %v", refs, err)
	}
}

func testIndexDelete(t *testing.T, s subject) {
	now := s.clock.Now()
	mustCreate(t, s, ID(t, 1), userRecord(now, "alice", "op-1"))
	mustCreate(t, s, ID(t, 2), userRecord(now, "alice", "op-2"))
	if err := s.Delete(t.Context(), ID(t, 1)); err != nil {
		t.Fatal(err)
	}
	if got := find(t, s, "alice", ""); !slices.Equal(got, []string{"alice/op-2"}) {
		t.Fatalf("after Delete: %v", got)
	}
	refs, err := s.FindSessions(t.Context(), "https://idp.example.com", "", "op-2")
	if err != nil || len(refs) != 1 {
		t.Fatalf("FindSessions(op-2): %v %v", refs, err)
	}
	if err := s.DeleteByRef(t.Context(), refs[0]); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, ID(t, 2))
	if _, err := s.GetByRef(t.Context(), refs[0]); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("GetByRef after DeleteByRef: %v", err)
	}
	if err := s.DeleteByRef(t.Context(), refs[0]); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	if got := find(t, s, "alice", ""); len(got) != 0 {
		t.Fatalf("after DeleteByRef: %v", got)
	}
}

func testIndexIdle(t *testing.T, s subject) {
	mustCreate(t, s, ID(t, 1), userRecord(s.clock.Now(), "alice", "op-1"))
	s.advance(t, Config().IdleTimeout+time.Second)
	if got := find(t, s, "alice", ""); len(got) != 0 {
		t.Fatalf("an idle-expired session is still found: %v", got)
	}
}

func testUseOnce(t *testing.T, s subject) {
	first, err := s.UseOnce(t.Context(), "jti-1", time.Minute)
	if err != nil || !first {
		t.Fatalf("first use: %v %v", first, err)
	}
	again, err := s.UseOnce(t.Context(), "jti-1", time.Minute)
	if err != nil || again {
		t.Fatalf("replay: %v %v", again, err)
	}
	if other, err := s.UseOnce(t.Context(), "jti-2", time.Minute); err != nil || !other {
		t.Fatalf("another key: %v %v", other, err)
	}
	s.advance(t, time.Minute+time.Second)
	if after, err := s.UseOnce(t.Context(), "jti-1", time.Minute); err != nil || !after {
		t.Fatalf("after its TTL: %v %v", after, err)
	}
	if _, err := s.UseOnce(t.Context(), "", time.Minute); err == nil {
		t.Fatal("an empty key was accepted")
	}
}
