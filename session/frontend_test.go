package session_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// Today's Redis keys, byte for byte, of the one-frontend release under
// key_prefix "bff:" and the suite's hash key: a session, a login state,
// the session's and a client token's locks, a client token, a one-time
// mark, and the session's two indexes. They were captured from that
// release's code; the default view must write and read exactly these.
var releaseKeys = []string{
	"bff:{HRhEdYS-0cDc4SdHKCfBIqNlw6ucJB4C5vIqR1nfa7s}:lk",
	"bff:{HRhEdYS-0cDc4SdHKCfBIqNlw6ucJB4C5vIqR1nfa7s}:s",
	"bff:{YBq1tCAP_qWxciivyiFo2gnf4yM8HiL8br0jfCaGiaM}:l",
	"bff:{cc:api}:c",
	"bff:{cc:api}:lk",
	"bff:{o:FkdfJsof1WcOJbbab-yzuoKQ2GE5nG9Lkom2dRfDUjw}:o",
	"bff:{sid:q6zT0MXFZiKOvh0sY6TPNHrVe1bmG7E095iVoHX5Rxg}:ix",
	"bff:{u:E68ceMlQsHow18tQDFIXXaDfGysmqrjiqChNWv-s8DA}:ix",
}

// releaseChannels are that release's pub/sub channels: lock releases,
// session changes, and the caches' acknowledgements.
var releaseChannels = []string{"bff:lock-released", "bff:session-changed", "bff:session-changed-ack"}

// Sealed values that release wrote (all-zero nonces, the suite's key k1 and
// clock) for sessiontest.Record under ID 1, login state {Nonce: "n"} of
// state-1/browser-1, and client token api. Equal bytes from the default
// view prove its additional data (the logical store key) is unchanged, so
// replicas of both releases read each other's records during an upgrade.
const (
	releaseSession     = "010000000000000001026b31000000000000000000000000a42902f2028752c69f6ecaaf2ae17920c9f165c83d3ea4856aae6abd1393163ad7d91433ecb0c6a872314f7d2c96a819c48fd1fe4e3f1de90b386834370642e89a8213afb47817465425b23b384bf3a168c7ac7cea56932a5fe3ef2587cfec32b7f566bdb248f702d3f5b9c0a76b325429b08d1f1ec7703a2eeb5b0e8e783b2219911e09a6a460546f6b4b8406fe029469d436f61032fc8efe6bb92a2d602ca25f192e21e3751193a4327f6e5b0596cabdcbe699283bd05d2b5c473314510ddf16192f73ea3bf0a6ad7d15cde4b2a784cfe81bfbd300f5a75a313295d06764aa973339c7bf73408f382c25c761549c54ad419a55ec75787a8f40c8d715eae9fe"
	releaseLoginState  = "010000000000000000026b31000000000000000000000000a42900f2761454f600a1062d32b71292ab0a5a81ed"
	releaseClientToken = "010000000000000000026b31000000000000000000000000a42900f260b8b23c459837a2078f5ef173a49c1f7d5f2933fb998b97"
)

// writeEveryKind writes one record of every kind through s, taking two
// locks it holds until the test ends.
func writeEveryKind(t *testing.T, s session.Store) {
	t.Helper()
	ctx := t.Context()
	id := sessiontest.ID(t, 1)
	mustCreate(t, s, id, sessiontest.Record(sessiontest.Epoch))
	if err := s.PutLoginState(ctx, "state-1", "browser-1", &sessionpb.LoginState{Nonce: "n"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []session.LockKey{session.SessionLock(id), session.ClientTokenLock("api")} {
		l, err := s.TryLock(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Release(context.Background()) })
	}
	tok := &sessionpb.ClientToken{AccessToken: "x", ExpiresAtUnixMs: sessiontest.Epoch.Add(time.Hour).UnixMilli()}
	if err := s.PutClientToken(ctx, "api", tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UseOnce(ctx, "jti-1", time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultFrontendKeepsReleaseLayout pins, against literals from the
// one-frontend release, every key, channel and sealed value of the
// backend and of its default view, and the forms of another frontend's
// view: an in-place upgrade keeps every session.
func TestDefaultFrontendKeepsReleaseLayout(t *testing.T) {
	t.Parallel()
	zero := func(s string) []string { return strings.Fields(s) }
	shopKeys := make([]string, len(releaseKeys))
	for i, k := range releaseKeys {
		shopKeys[i] = "bff:shop:" + strings.TrimPrefix(k, "bff:")
	}
	tests := []struct {
		name         string
		view         string // "" is the backend itself
		wantKeys     []string
		wantChannels []string
		wantSealed   []string // session, login state, client token; nil: must differ from the release's
	}{
		{name: "backend", wantKeys: releaseKeys, wantChannels: releaseChannels,
			wantSealed: zero(releaseSession + " " + releaseLoginState + " " + releaseClientToken)},
		{name: "default_view", view: session.DefaultFrontend, wantKeys: releaseKeys, wantChannels: releaseChannels,
			wantSealed: zero(releaseSession + " " + releaseLoginState + " " + releaseClientToken)},
		{name: "other_view", view: "shop", wantKeys: shopKeys,
			wantChannels: []string{"bff:shop:lock-released", "bff:shop:session-changed", "bff:shop:session-changed-ack"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newRedisEnv(t) // a server of its own: KEYS * and PUBSUB CHANNELS see this row alone
			cfg := sessiontest.Config()
			cfg.KeyPrefix = "bff:"
			c := sessiontest.Config()
			ring, err := session.NewKeyRing(c.EncryptionKeys, c.HashKey, session.WithRand(bytes.NewReader(make([]byte, 1<<10))))
			if err != nil {
				t.Fatal(err)
			}
			var s session.Backend = session.NewRedisStore(env.client, cfg, ring, func() time.Time { return sessiontest.Epoch })
			if tc.view != "" {
				if s, err = s.Frontend(tc.view, cfg.FrontendDefaults()); err != nil {
					t.Fatal(err)
				}
			}
			writeEveryKind(t, s)
			keys := env.client.Keys(t.Context(), "*").Val()
			slices.Sort(keys)
			if !slices.Equal(keys, tc.wantKeys) {
				t.Errorf("keys\n%q\nwant\n%q", keys, tc.wantKeys)
			}

			// The channels, as used: a cache follows two, a lock waiter the third.
			cache, err := session.NewCache(s, session.CacheConfig{TTL: time.Second, MaxEntries: 10}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sessiontest.RunCache(t, cache)
			if err := s.WaitUnlock(t.Context(), session.SessionLock(sessiontest.ID(t, 9))); err != nil {
				t.Fatal(err)
			}
			channels := env.client.PubSubChannels(t.Context(), "*").Val()
			slices.Sort(channels)
			if !slices.Equal(channels, tc.wantChannels) {
				t.Errorf("channels %q, want %q", channels, tc.wantChannels)
			}

			for i, k := range []string{tc.wantKeys[1], tc.wantKeys[2], tc.wantKeys[3]} {
				got := hex.EncodeToString([]byte(env.client.Get(t.Context(), k).Val()))
				switch {
				case tc.wantSealed == nil && got == []string{releaseSession, releaseLoginState, releaseClientToken}[i]:
					t.Errorf("%s holds the default frontend's sealed bytes", k)
				case tc.wantSealed != nil && got != tc.wantSealed[i]:
					t.Errorf("%s holds\n%s\nwant the release's\n%s", k, got, tc.wantSealed[i])
				}
			}
		})
	}
}

// TestDefaultFrontendReadsReleaseRecords: records the release wrote open in
// the backend and its default view, and in no other frontend's view even
// when moved under its keys (GET/SET of the value, as a Redis user could).
func TestDefaultFrontendReadsReleaseRecords(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	root := env.store(t, func() time.Time { return sessiontest.Epoch })
	dflt, err := root.Frontend(session.DefaultFrontend, sessiontest.Config().FrontendDefaults())
	if err != nil {
		t.Fatal(err)
	}
	shop, err := root.Frontend("shop", sessiontest.Config().FrontendDefaults())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id := sessiontest.ID(t, 1)
	kinds := []struct {
		name   string
		suffix string // the key's form after the prefix
		sealed string
		read   func(s session.Store) error
	}{
		{name: "session", suffix: "{HRhEdYS-0cDc4SdHKCfBIqNlw6ucJB4C5vIqR1nfa7s}:s", sealed: releaseSession,
			read: func(s session.Store) error { _, err := s.Get(ctx, id); return err }},
		{name: "login_state", suffix: "{YBq1tCAP_qWxciivyiFo2gnf4yM8HiL8br0jfCaGiaM}:l", sealed: releaseLoginState,
			read: func(s session.Store) error { _, err := s.TakeLoginState(ctx, "state-1", "browser-1"); return err }},
		{name: "client_token", suffix: "{cc:api}:c", sealed: releaseClientToken,
			read: func(s session.Store) error { _, err := s.GetClientToken(ctx, "api"); return err }},
	}
	prefix := strings.TrimSuffix(root.SessionKey(id), "{HRhEdYS-0cDc4SdHKCfBIqNlw6ucJB4C5vIqR1nfa7s}:s")
	for _, k := range kinds {
		sealed, err := hex.DecodeString(k.sealed)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct {
			name     string
			s        session.Store
			ns       string
			wantOpen bool
		}{{"backend", root, "", true}, {"default_view", dflt, "", true}, {"shop_view", shop, "shop:", false}} {
			key := prefix + v.ns + k.suffix
			if err := env.client.Set(ctx, key, sealed, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			err := k.read(v.s)
			switch {
			case v.wantOpen && err != nil:
				t.Errorf("%s: %s of the release: %v", v.name, k.name, err)
			case !v.wantOpen && (!errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable)):
				t.Errorf("%s: %s copied in = %v, want ErrNotFound and ErrUnreadable", v.name, k.name, err)
			}
			env.client.Del(ctx, key)
		}
	}
}

// TestRedisFrontendLockWakeUps: a lock waiter of each view is woken by a
// release in its own frontend, on another replica, through the shared
// subscription (the poll interval here is longer than the test waits); a
// release of the same lock in another frontend does not wake it.
func TestRedisFrontendLockWakeUps(t *testing.T) {
	t.Parallel()
	addr := sessiontest.StartRedis(t)
	cfg := sessiontest.Config()
	cfg.LockTTL, cfg.LockPollInterval = time.Minute, 30*time.Second
	replica := func() session.Backend {
		client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
		s := session.NewRedisStore(client, cfg, sessiontest.KeyRing(t), nil)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	holders, waiters := replica(), replica()
	open := func(b session.Backend, name string) session.Backend {
		v, err := b.Frontend(name, cfg.FrontendDefaults())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	key := session.SessionLock(sessiontest.ID(t, 1))
	// In order: each view adds its channel to the waiters' one subscription.
	for _, name := range []string{session.DefaultFrontend, "shop", "admin"} {
		t.Run(name, func(t *testing.T) {
			holder, other, waiter := open(holders, name), open(holders, "other"), open(waiters, name)
			mine, err := holder.TryLock(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			defer mine.Release(context.Background())
			theirs, err := other.TryLock(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			go func() { done <- waiter.WaitUnlock(ctx, key) }()
			time.Sleep(100 * time.Millisecond) // let it subscribe and find the lock held
			if err := theirs.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				t.Fatalf("another frontend's release ended the wait: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			start := time.Now()
			if err := mine.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("WaitUnlock = %v, want a wake-up", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("woken after %s: by the poll, not the release", d)
			}
		})
	}
}

// TestMemoryFrontendSweep: the store's sweeper removes the expired entries
// and index entries of every view, whichever ran it.
func TestMemoryFrontendSweep(t *testing.T) {
	t.Parallel()
	clock := sessiontest.NewClock(sessiontest.Epoch)
	m := newMemory(t, clock.Now)
	fc := sessiontest.Config().FrontendDefaults()
	fc.IdleTimeout = time.Minute
	shop, err := m.Frontend("shop", fc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustCreate(t, shop, sessiontest.ID(t, byte(i)), sessiontest.Record(clock.Now()))
	}
	mustCreate(t, m, sessiontest.ID(t, 9), sessiontest.Record(clock.Now()))
	clock.Advance(2 * time.Minute) // past the view's idle timeout, not the store's
	if got := m.Sweep(100); got != 3 {
		t.Errorf("swept %d, want the view's 3", got)
	}
	if got := m.Len(); got != 1 {
		t.Errorf("%d entries left, want 1", got)
	}
	if got := shop.(*session.MemoryStore).Sweep(100); got != 0 {
		t.Errorf("the view's sweep found %d more", got)
	}
	if got := m.IndexEntries(); got != 2 { // the store's session: user and sid
		t.Errorf("%d index entries left, want 2", got)
	}
}

func TestFrontendConfig(t *testing.T) {
	t.Parallel()
	c := session.DefaultConfig()
	c.IdleTimeout, c.AbsoluteLifetime = time.Hour, 8*time.Hour
	c.Cookie = session.CookieConfig{Name: "__Host-app", SameSite: "strict"}
	want := session.FrontendConfig{Cookie: c.Cookie, IdleTimeout: time.Hour, AbsoluteLifetime: 8 * time.Hour}
	if got := c.FrontendDefaults(); got != want {
		t.Fatalf("FrontendDefaults = %+v, want %+v", got, want)
	}

	var fromYAML session.FrontendConfig
	doc := "cookie: {name: __Host-shop, same_site: lax}\nidle_timeout: 30m\nabsolute_lifetime: 12h\n"
	if err := yaml.Unmarshal([]byte(doc), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if fromYAML != (session.FrontendConfig{Cookie: session.CookieConfig{Name: "__Host-shop", SameSite: "lax"}, IdleTimeout: 30 * time.Minute, AbsoluteLifetime: 12 * time.Hour}) {
		t.Fatalf("from YAML: %+v", fromYAML)
	}

	tests := []struct {
		name   string
		mutate func(fc *session.FrontendConfig)
		want   []string // every one must appear; nil means valid
	}{
		{name: "valid", mutate: func(*session.FrontendConfig) {}},
		{name: "durations", mutate: func(fc *session.FrontendConfig) { fc.IdleTimeout, fc.AbsoluteLifetime = 0, 0 },
			want: []string{"idle_timeout: must be at least 1ms", "absolute_lifetime: must be at least 1ms"}},
		{name: "idle_beyond_absolute", mutate: func(fc *session.FrontendConfig) { fc.IdleTimeout = 9 * time.Hour },
			want: []string{"idle_timeout: must not exceed absolute_lifetime"}},
		{name: "cookie", mutate: func(fc *session.FrontendConfig) { fc.Cookie = session.CookieConfig{Name: "bff", SameSite: "none"} },
			want: []string{"cookie.name: must start with __Host-", `cookie.same_site: must be "lax" or "strict"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fc := want
			tc.mutate(&fc)
			err := fc.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok || len(joined.Unwrap()) != len(tc.want) {
				t.Fatalf("Validate = %v, want %d joined errors", err, len(tc.want))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want %q", err, w)
				}
			}
		})
	}
}
