package sessiontest

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// inspectSlack is how much earlier than the suite clock says an idle expiry
// may be reported: Redis counts its TTLs down in real time as well, between
// the write and the read.
const inspectSlack = time.Second

func mustInspect(t *testing.T, s session.Store, id session.ID) (*sessionpb.Session, time.Time) {
	t.Helper()
	rec, at, err := s.Inspect(t.Context(), id)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return rec, at
}

// wantIdleEnd checks that Inspect reports want as the idle expiry (up to
// inspectSlack earlier, never later).
func wantIdleEnd(t *testing.T, s session.Store, id session.ID, want time.Time) {
	t.Helper()
	_, got := mustInspect(t, s, id)
	if got.After(want) || want.Sub(got) > inspectSlack {
		t.Fatalf("Inspect idle expiry = %s, want %s", got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
}

func wantInspectNotFound(t *testing.T, s session.Store, id session.ID) {
	t.Helper()
	if _, _, err := s.Inspect(t.Context(), id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Inspect = %v, want ErrNotFound", err)
	}
}

// testInspectRoundTrips: Inspect returns the stored record, a copy the
// caller may change, and the idle expiry of its last write.
func testInspectRoundTrips(t *testing.T, s subject) {
	id := ID(t, 1)
	rec := Record(s.clock.Now())
	mustCreate(t, s, id, rec)
	got, at := mustInspect(t, s, id)
	if !proto.Equal(got, rec) {
		t.Errorf("Inspect = %v\nwant %v", got, rec)
	}
	want := s.clock.Now().Add(Config().IdleTimeout)
	if at.After(want) || want.Sub(at) > inspectSlack {
		t.Errorf("idle expiry %s, want %s", at, want)
	}
	got.AccessToken = "changed by caller"
	if again, _ := mustInspect(t, s, id); again.AccessToken != rec.AccessToken {
		t.Error("a returned record aliases the stored one")
	}
}

// testInspectDoesNotSlide: a session only ever inspected ends at the idle
// expiry of its last real use, and Inspect says so each time it is asked.
func testInspectDoesNotSlide(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	idle := Config().IdleTimeout
	end := s.clock.Now().Add(idle)
	step := idle / 4
	for range 3 { // polled every quarter of the idle timeout
		s.advance(t, step)
		wantIdleEnd(t, s, id, end)
	}
	s.advance(t, end.Sub(s.clock.Now())+time.Second)
	wantInspectNotFound(t, s, id)
	wantNotFound(t, s, id)
}

// testInspectSeesGetSlide: after a Get (which slides), Inspect reports the
// renewed idle expiry.
func testInspectSeesGetSlide(t *testing.T, s subject) {
	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	s.advance(t, 10*time.Minute)
	mustGet(t, s, id)
	wantIdleEnd(t, s, id, s.clock.Now().Add(Config().IdleTimeout))
	rec, _ := mustInspect(t, s, id)
	s.advance(t, 5*time.Minute)
	if err := s.Update(t.Context(), id, rec, rec.Generation); err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantIdleEnd(t, s, id, s.clock.Now().Add(Config().IdleTimeout)) // a write renews it too
}

// testInspectCappedByAbsolute: near the end of its absolute lifetime a
// session's idle expiry is its absolute expiry, even right after a Get
// (Redis's GETEX renews the full idle timeout).
func testInspectCappedByAbsolute(t *testing.T, s subject) {
	id := ID(t, 1)
	rec := Record(s.clock.Now())
	mustCreate(t, s, id, rec)
	abs := time.UnixMilli(rec.AbsoluteExpiresAtUnixMs)
	step := Config().IdleTimeout / 2
	for s.clock.Now().Add(Config().IdleTimeout).Before(abs) { // busy until the last idle timeout
		s.advance(t, step)
		mustGet(t, s, id)
	}
	s.advance(t, step/2)
	mustGet(t, s, id)
	_, at := mustInspect(t, s, id)
	if !at.Equal(abs) {
		t.Errorf("idle expiry %s, want the absolute expiry %s", at, abs)
	}
	s.advance(t, abs.Sub(s.clock.Now()))
	wantInspectNotFound(t, s, id)
}

// testInspectNotFound: Inspect answers ErrNotFound as Get does: unknown,
// deleted, or unreadable under the current keys.
func testInspectNotFound(t *testing.T, s subject) {
	wantInspectNotFound(t, s, ID(t, 9))

	id := ID(t, 1)
	mustCreate(t, s, id, Record(s.clock.Now()))
	if err := s.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	wantInspectNotFound(t, s, id)

	other := ID(t, 2)
	mustCreate(t, s, other, Record(s.clock.Now()))
	ring, err := session.NewKeyRing(session.KeyList{{ID: "k2", Secret: key2}}, hashKey)
	if err != nil {
		t.Fatal(err)
	}
	wantInspectNotFound(t, s.rekey(t, ring), other) // its key was removed: it never opens again
}
