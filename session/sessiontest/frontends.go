package sessiontest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// SealedCopier is a backend whose storage the suite can write around the
// store, as anyone with write access to Redis could: CopySealedSession puts
// the sealed session record that view from holds for id where view to
// looks for id, without opening it.
type SealedCopier interface {
	CopySealedSession(t testing.TB, from, to session.Store, id session.ID)
}

// The frontends whose views RunFrontendTests holds apart.
const (
	// FrontendA is the first view's frontend.
	FrontendA = "shop"
	// FrontendB is the second view's frontend, which must never see FrontendA's records.
	FrontendB = "admin"
)

// frontends is a fresh backend, two views of other frontends and its
// default view, on one clock.
type frontends struct {
	root, a, b, dflt session.Backend
	clock            *Clock
}

// advance moves the injected clock, and the storage's own clock if it has
// one (once: every view shares the root's storage).
func (f frontends) advance(t testing.TB, d time.Duration) {
	t.Helper()
	subject{Store: f.root, clock: f.clock}.advance(t, d)
}

// copySealed copies id's sealed record from view from to view to.
func (f frontends) copySealed(t testing.TB, from, to session.Store, id session.ID) {
	t.Helper()
	c, ok := f.root.(SealedCopier)
	if !ok {
		t.Fatalf("%T must implement sessiontest.SealedCopier", f.root)
	}
	c.CopySealedSession(t, from, to, id)
}

// view opens frontend name on b with the suite's lifetimes.
func view(t testing.TB, b session.Backend, name string) session.Backend {
	t.Helper()
	v, err := b.Frontend(name, Config().FrontendDefaults())
	if err != nil {
		t.Fatalf("Frontend(%q): %v", name, err)
	}
	return v
}

// RunFrontendTests is the contract of Backend.Frontend: views of two
// frontends never see each other's sessions, logins, locks, indexes,
// client tokens or one-time marks, a sealed record moved between them does
// not open, and the default view is the backend's own keys. newBackend
// must return a fresh, empty backend built from Config() on the given
// clock; each subtest calls it once and runs in parallel with the others.
func RunFrontendTests(t *testing.T, newBackend func(t *testing.T, now func() time.Time) session.Backend) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, f frontends)
	}{
		{"same_id_two_sessions", testFrontendSameID},
		{"session_ops_do_not_cross", testFrontendSessionOps},
		{"login_states_per_frontend", testFrontendLoginStates},
		{"locks_per_frontend", testFrontendLocks},
		{"indexes_per_frontend", testFrontendIndexes},
		{"client_tokens_per_frontend", testFrontendClientTokens},
		{"use_once_per_frontend", testFrontendUseOnce},
		{"sealed_record_copied_does_not_open", testFrontendCopied},
		{"default_view_is_the_backend", testFrontendDefault},
		{"view_uses_its_lifetimes", testFrontendLifetimes},
		{"view_close_is_a_no_op", testFrontendClose},
		{"names_and_settings_checked", testFrontendNames},
		{"derived_tokens_per_frontend", testFrontendDerived},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(Epoch)
			root := newBackend(t, clock.Now)
			tc.run(t, frontends{root: root, a: view(t, root, FrontendA), b: view(t, root, FrontendB),
				dflt: view(t, root, session.DefaultFrontend), clock: clock})
		})
	}
}

func subjectRecord(now time.Time, sub string) *sessionpb.Session {
	r := Record(now)
	r.Subject, r.AccessToken = sub, "access-"+sub
	return r
}

func testFrontendSameID(t *testing.T, f frontends) {
	id := ID(t, 1)
	mustCreate(t, f.a, id, subjectRecord(f.clock.Now(), "a"))
	wantNotFound(t, f.b, id)
	wantNotFound(t, f.root, id)
	mustCreate(t, f.b, id, subjectRecord(f.clock.Now(), "b"))
	if got := mustGet(t, f.a, id); got.Subject != "a" {
		t.Errorf("A reads subject %q, want a", got.Subject)
	}
	if got := mustGet(t, f.b, id); got.Subject != "b" {
		t.Errorf("B reads subject %q, want b", got.Subject)
	}
	if err := f.a.Delete(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, f.a, id)
	if got := mustGet(t, f.b, id); got.Subject != "b" {
		t.Errorf("after A's delete, B reads subject %q", got.Subject)
	}
}

// testFrontendSessionOps: no operation through view B on A's session ID
// reaches A's session.
func testFrontendSessionOps(t *testing.T, f frontends) {
	tests := []struct {
		name string
		op   func(t *testing.T, b session.Store, id session.ID) error
		want error // nil: must succeed (and still not touch A)
	}{
		{name: "get", want: session.ErrNotFound, op: func(t *testing.T, b session.Store, id session.ID) error {
			_, err := b.Get(t.Context(), id)
			return err
		}},
		{name: "inspect", want: session.ErrNotFound, op: func(t *testing.T, b session.Store, id session.ID) error {
			_, _, err := b.Inspect(t.Context(), id)
			return err
		}},
		{name: "update", want: session.ErrNotFound, op: func(t *testing.T, b session.Store, id session.ID) error {
			rec := subjectRecord(f.clock.Now(), "mallory")
			return b.Update(t.Context(), id, rec, 1)
		}},
		{name: "delete", op: func(t *testing.T, b session.Store, id session.ID) error {
			return b.Delete(t.Context(), id)
		}},
		{name: "get_by_ref", want: session.ErrNotFound, op: func(t *testing.T, b session.Store, id session.ID) error {
			_, err := b.GetByRef(t.Context(), session.Ref(f.root.KeyRing().HashID(id)))
			return err
		}},
		{name: "delete_by_ref", op: func(t *testing.T, b session.Store, id session.ID) error {
			return b.DeleteByRef(t.Context(), session.Ref(f.root.KeyRing().HashID(id)))
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := ID(t, byte(10+i))
			want := subjectRecord(f.clock.Now(), "a")
			mustCreate(t, f.a, id, want)
			if err := tc.op(t, f.b, id); (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("%s in B = %v, want %v", tc.name, err, tc.want)
			}
			if got := mustGet(t, f.a, id); !proto.Equal(got, want) {
				t.Fatalf("after %s in B, A reads %v, want %v", tc.name, got, want)
			}
		})
	}
}

func testFrontendLoginStates(t *testing.T, f frontends) {
	ctx := t.Context()
	la, lb := loginState(), loginState()
	la.ReturnUrl, lb.ReturnUrl = "/a", "/b"
	if err := f.a.PutLoginState(ctx, "state-1", testBrowser, la); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.TakeLoginState(ctx, "state-1", testBrowser); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("B takes A's login state: %v", err)
	}
	if err := f.b.PutLoginState(ctx, "state-1", testBrowser, lb); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    session.Store
		want string
	}{{"a", f.a, "/a"}, {"b", f.b, "/b"}} {
		got, err := tc.s.TakeLoginState(ctx, "state-1", testBrowser)
		if err != nil || got.GetReturnUrl() != tc.want {
			t.Errorf("%s takes %v, %v; want return URL %s", tc.name, got, err, tc.want)
		}
	}
}

func testFrontendLocks(t *testing.T, f frontends) {
	for _, key := range []session.LockKey{session.SessionLock(ID(t, 1)), session.ClientTokenLock("api")} {
		mustLock(t, f.a, key)
		mustLock(t, f.b, key) // A's holder does not hold B's lock
		mustLock(t, f.root, key)
		wantLocked(t, f.a, key)
		wantLocked(t, f.b, key)
		wantLocked(t, f.dflt, key) // the backend's own lock
	}
	for _, s := range []session.Store{f.a, f.b} { // waiting works in every view
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := s.WaitUnlock(ctx, session.SessionLock(ID(t, 2)))
		cancel()
		if err != nil {
			t.Fatalf("WaitUnlock of an absent lock: %v", err)
		}
	}
}

func testFrontendIndexes(t *testing.T, f frontends) {
	now := f.clock.Now()
	shared := ID(t, 1) // the same ID, and so the same ref, in both
	mustCreate(t, f.a, shared, userRecord(now, "alice", "op-1"))
	mustCreate(t, f.b, shared, userRecord(now, "alice", "op-1"))
	mustCreate(t, f.b, ID(t, 2), userRecord(now, "alice", "op-2"))
	if got := find(t, f.a, "alice", ""); !slices.Equal(got, []string{"alice/op-1"}) {
		t.Fatalf("A finds %v", got)
	}
	if got := find(t, f.b, "alice", ""); !slices.Equal(got, []string{"alice/op-1", "alice/op-2"}) {
		t.Fatalf("B finds %v", got)
	}
	if got := find(t, f.root, "alice", ""); len(got) != 0 {
		t.Fatalf("the default frontend finds %v", got)
	}
	refs, err := f.b.FindSessions(t.Context(), "https://idp.example.com", "", "op-2")
	if err != nil || len(refs) != 1 {
		t.Fatalf("B's op-2: %v %v", refs, err)
	}
	if _, err := f.a.GetByRef(t.Context(), refs[0]); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("A reads B's ref: %v", err)
	}
	if err := f.a.DeleteByRef(t.Context(), refs[0]); err != nil {
		t.Fatal(err)
	}
	mustGet(t, f.b, ID(t, 2))
	// Logging out op-1 in B (back-channel logout) leaves A's op-1 session.
	refs, err = f.b.FindSessions(t.Context(), "https://idp.example.com", "", "op-1")
	if err != nil || len(refs) != 1 {
		t.Fatalf("B's op-1: %v %v", refs, err)
	}
	if err := f.b.DeleteByRef(t.Context(), refs[0]); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, f.b, shared)
	mustGet(t, f.a, shared)
	if got := find(t, f.a, "", "op-1"); !slices.Equal(got, []string{"alice/op-1"}) {
		t.Fatalf("after B's logout A finds %v", got)
	}
}

func testFrontendClientTokens(t *testing.T, f frontends) {
	ctx := t.Context()
	tok := func(v string) *sessionpb.ClientToken {
		return &sessionpb.ClientToken{AccessToken: v, ExpiresAtUnixMs: f.clock.Now().Add(time.Hour).UnixMilli()}
	}
	if err := f.a.PutClientToken(ctx, "api", tok("token-a")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.GetClientToken(ctx, "api"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("B reads A's client token: %v", err)
	}
	if err := f.b.PutClientToken(ctx, "api", tok("token-b")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    session.Store
		want string
	}{{"a", f.a, "token-a"}, {"b", f.b, "token-b"}} {
		if got, err := tc.s.GetClientToken(ctx, "api"); err != nil || got.GetAccessToken() != tc.want {
			t.Errorf("%s reads %v, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}

func testFrontendUseOnce(t *testing.T, f frontends) {
	for _, tc := range []struct {
		name string
		s    session.Store
		want bool
	}{{"a_first", f.a, true}, {"b_first", f.b, true}, {"default_first", f.root, true}, {"a_again", f.a, false}, {"b_again", f.b, false}} {
		if got, err := tc.s.UseOnce(t.Context(), "jti-1", time.Minute); err != nil || got != tc.want {
			t.Errorf("%s: UseOnce = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// testFrontendCopied: a record's additional data binds it to its
// frontend, so a sealed record copied into another frontend's keys (same
// session ID) is never returned as a session there.
func testFrontendCopied(t *testing.T, f frontends) {
	tests := []struct {
		name     string
		from, to session.Backend
	}{
		{"a_to_b", f.a, f.b},
		{"b_to_a", f.b, f.a},
		{"a_to_default", f.a, f.dflt},
		{"default_to_a", f.dflt, f.a},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := ID(t, byte(20+i))
			mustCreate(t, tc.from, id, Record(f.clock.Now()))
			f.copySealed(t, tc.from, tc.to, id)
			_, err := tc.to.Get(t.Context(), id)
			if !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable) {
				t.Fatalf("Get of a copied record = %v, want ErrNotFound and ErrUnreadable", err)
			}
			if _, err := tc.to.GetByRef(t.Context(), session.Ref(f.root.KeyRing().HashID(id))); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("GetByRef of a copied record = %v, want ErrNotFound", err)
			}
			mustGet(t, tc.from, id)
		})
	}
}

// testFrontendDefault: the default view is the backend's own keys, so a
// deployment upgraded to frontends keeps its sessions, logins, locks,
// tokens and marks.
func testFrontendDefault(t *testing.T, f frontends) {
	ctx := t.Context()
	id := ID(t, 1)
	want := userRecord(f.clock.Now(), "alice", "op-1")
	mustCreate(t, f.root, id, want)
	if got := mustGet(t, f.dflt, id); !proto.Equal(got, want) {
		t.Errorf("default view reads %v, want %v", got, want)
	}
	if got := find(t, f.dflt, "alice", ""); !slices.Equal(got, []string{"alice/op-1"}) {
		t.Errorf("default view finds %v", got)
	}
	if err := f.root.PutLoginState(ctx, "state-1", testBrowser, loginState()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dflt.TakeLoginState(ctx, "state-1", testBrowser); err != nil {
		t.Errorf("default view takes the backend's login state: %v", err)
	}
	tok := &sessionpb.ClientToken{AccessToken: "t", ExpiresAtUnixMs: f.clock.Now().Add(time.Hour).UnixMilli()}
	if err := f.root.PutClientToken(ctx, "api", tok); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dflt.GetClientToken(ctx, "api"); err != nil {
		t.Errorf("default view reads the backend's client token: %v", err)
	}
	mustLock(t, f.root, session.SessionLock(id))
	wantLocked(t, f.dflt, session.SessionLock(id))
	if first, err := f.root.UseOnce(ctx, "jti-1", time.Minute); err != nil || !first {
		t.Fatal(first, err)
	}
	if first, err := f.dflt.UseOnce(ctx, "jti-1", time.Minute); err != nil || first {
		t.Errorf("default view's UseOnce after the backend's = %v, %v; want false", first, err)
	}
	if err := f.dflt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, f.root, id)
}

func testFrontendLifetimes(t *testing.T, f frontends) {
	fc := Config().FrontendDefaults()
	fc.IdleTimeout, fc.AbsoluteLifetime = 10*time.Minute, time.Hour
	short, err := f.root.Frontend("short", fc)
	if err != nil {
		t.Fatal(err)
	}
	id := ID(t, 1)
	mustCreate(t, short, id, &sessionpb.Session{Subject: "u"})
	mustCreate(t, f.a, id, &sessionpb.Session{Subject: "u"})
	if got := mustGet(t, short, id); got.AbsoluteExpiresAtUnixMs != f.clock.Now().Add(time.Hour).UnixMilli() {
		t.Errorf("absolute expiry %d, want the view's lifetime (1h)", got.AbsoluteExpiresAtUnixMs)
	}
	wantIdleEnd(t, short, id, f.clock.Now().Add(10*time.Minute)) // the view's idle timeout, not the suite's 30m
	f.advance(t, 11*time.Minute)
	wantNotFound(t, short, id) // idle past the view's 10m
	mustGet(t, f.a, id)        // the suite's 30m still holds
}

func testFrontendClose(t *testing.T, f frontends) {
	if err := f.a.Close(); err != nil {
		t.Fatalf("closing a view: %v", err)
	}
	id := ID(t, 1)
	for _, s := range []session.Backend{f.a, f.b, f.root} {
		mustCreate(t, s, id, Record(f.clock.Now()))
		mustGet(t, s, id)
		if err := s.Ping(t.Context()); err != nil {
			t.Fatalf("Ping after a view closed: %v", err)
		}
	}
}

func testFrontendNames(t *testing.T, f frontends) {
	ok := Config().FrontendDefaults()
	tests := []struct {
		name    string
		view    string
		fc      func(fc *session.FrontendConfig)
		wantErr string // "" means accepted
	}{
		{name: "lower", view: "shop"},
		{name: "digits_and_dash", view: "0-shop-2"},
		{name: "max_length", view: strings.Repeat("a", 32)},
		{name: "empty", view: "", wantErr: "frontend name"},
		{name: "too_long", view: strings.Repeat("a", 33), wantErr: "frontend name"},
		{name: "upper", view: "Shop", wantErr: "frontend name"},
		{name: "colon", view: "a:b", wantErr: "frontend name"},
		{name: "brace", view: "{a}", wantErr: "frontend name"},
		{name: "underscore", view: "a_b", wantErr: "frontend name"},
		{name: "non_ascii", view: "shöp", wantErr: "frontend name"},
		{name: "bad_lifetimes", view: "shop", fc: func(fc *session.FrontendConfig) { fc.IdleTimeout = 0 }, wantErr: "idle_timeout"},
		{name: "bad_cookie", view: "shop", fc: func(fc *session.FrontendConfig) { fc.Cookie.Name = "bff" }, wantErr: "cookie.name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fc := ok
			if tc.fc != nil {
				tc.fc(&fc)
			}
			v, err := f.root.Frontend(tc.view, fc)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Frontend(%q) = %v", tc.view, err)
			case tc.wantErr == "" && v == nil:
				t.Fatalf("Frontend(%q) returned no view", tc.view)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Frontend(%q) = %v, want an error about %s", tc.view, err, tc.wantErr)
			}
		})
	}
}
