package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

func newMemory(t *testing.T, now func() time.Time) *session.MemoryStore {
	t.Helper()
	return session.NewMemoryStore(sessiontest.Config(), sessiontest.KeyRing(t), now)
}

func TestMemoryStoreContract(t *testing.T) {
	t.Parallel()
	sessiontest.RunStoreTests(t, func(t *testing.T, now func() time.Time) session.Store {
		return newMemory(t, now)
	})
}

func TestMemoryStoreFrontends(t *testing.T) {
	t.Parallel()
	sessiontest.RunFrontendTests(t, func(t *testing.T, now func() time.Time) session.Backend {
		return newMemory(t, now)
	})
}

func TestMemoryStoreSweep(t *testing.T) {
	t.Parallel()
	clock := sessiontest.NewClock(sessiontest.Epoch)
	m := newMemory(t, clock.Now)
	for i := range 10 {
		if err := m.Create(t.Context(), sessiontest.ID(t, byte(i)), sessiontest.Record(clock.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.PutLoginState(t.Context(), "s", "b", &sessionpb.LoginState{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(sessiontest.Config().LoginStateTTL + time.Second)
	if err := m.Create(t.Context(), sessiontest.ID(t, 99), sessiontest.Record(clock.Now())); err != nil {
		t.Fatal(err)
	}
	clock.Advance(sessiontest.Config().IdleTimeout - time.Second) // the first 10 are now idle-expired
	tests := []struct {
		name        string
		limit       int
		wantRemoved int
		wantLeft    int
	}{
		{name: "bounded", limit: 0, wantRemoved: 0, wantLeft: 12},
		{name: "rest", limit: 100, wantRemoved: 11, wantLeft: 1},
		{name: "idempotent", limit: 100, wantRemoved: 0, wantLeft: 1},
	}
	for _, tc := range tests { // sequential: each row sweeps the same store
		if got := m.Sweep(tc.limit); got != tc.wantRemoved {
			t.Errorf("%s: removed %d, want %d", tc.name, got, tc.wantRemoved)
		}
		if got := m.Len(); got != tc.wantLeft {
			t.Errorf("%s: %d left, want %d", tc.name, got, tc.wantLeft)
		}
	}
}

func TestMemoryStoreRunStopsWithContext(t *testing.T) {
	t.Parallel()
	m := newMemory(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestMemoryStoreClosed(t *testing.T) {
	t.Parallel()
	m := newMemory(t, nil)
	if err := m.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	id := sessiontest.ID(t, 1)
	for name, err := range map[string]error{
		"ping":   m.Ping(t.Context()),
		"create": m.Create(t.Context(), id, sessiontest.Record(sessiontest.Epoch)),
		"delete": m.Delete(t.Context(), id),
	} {
		if !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", name, err)
		}
	}
	if _, err := m.Get(t.Context(), id); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("get after Close = %v, want ErrUnavailable", err)
	}
}

func TestMemoryStoreSweepsIndexes(t *testing.T) {
	t.Parallel()
	clock := sessiontest.NewClock(sessiontest.Epoch)
	m := newMemory(t, clock.Now)
	for i := range 5 {
		if err := m.Create(t.Context(), sessiontest.ID(t, byte(i)), sessiontest.Record(clock.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.IndexEntries(); n != 10 { // each session: its user and its sid
		t.Fatalf("%d index entries, want 10", n)
	}
	clock.Advance(sessiontest.Config().IdleTimeout + time.Second)
	m.Sweep(1 << 20)
	if n, l := m.IndexEntries(), m.Len(); n != 0 || l != 0 {
		t.Fatalf("after the sweep: %d index entries, %d entries", n, l)
	}
}

// TestMemoryStoreKeepsTheOpenedRecord: a Check's read (GetShared) opens and
// decodes a record once per write and shares it; Get still hands out the
// caller's own copy; a write serves the new record at once; and rotating
// the ring in place re-opens the record, so a key removed from the ring
// ends its sessions even after they were read (as in Redis).
func TestMemoryStoreKeepsTheOpenedRecord(t *testing.T) {
	t.Parallel()
	m := newMemory(t, nil)
	ctx := t.Context()
	id := sessiontest.ID(t, 1)
	if err := m.Create(ctx, id, sessiontest.Record(time.Now())); err != nil {
		t.Fatal(err)
	}
	first := mustGetShared(t, m, id)
	if again := mustGetShared(t, m, id); again != first {
		t.Fatal("a second read opened the record again")
	}
	own, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if own == first {
		t.Fatal("Get handed out the shared record")
	}
	own.AccessToken = "written"
	if err := m.Update(ctx, id, own, own.Generation); err != nil {
		t.Fatal(err)
	}
	if got := mustGetShared(t, m, id); got.AccessToken != "written" || first.AccessToken == "written" {
		t.Fatalf("after a write: read %q, the earlier shared record %q", got.AccessToken, first.AccessToken)
	}

	ring := m.KeyRing()
	old := sessiontest.Config().EncryptionKeys
	withNew := append(session.KeyList{{ID: "k9", Secret: "dGhpcmQta2V5LXRoaXJkLWtleS10aGlyZC1rZXktMy4="}}, old...)
	if err := ring.Rotate(withNew); err != nil {
		t.Fatal(err)
	}
	before := mustGetShared(t, m, id)
	if err := ring.Rotate(withNew[:1]); err != nil { // the record's key leaves the ring
		t.Fatal(err)
	}
	for name, get := range map[string]func(context.Context, session.ID) (*sessionpb.Session, error){"GetShared": m.GetShared, "Get": m.Get} {
		if s, err := get(ctx, id); !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable) {
			t.Errorf("%s after its key was removed = %v, %v; want ErrNotFound and ErrUnreadable (the record read before was %p)", name, s, err, before)
		}
	}
}

func mustGetShared(t *testing.T, m *session.MemoryStore, id session.ID) *sessionpb.Session {
	t.Helper()
	s, err := m.GetShared(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
