package oidcflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// Test client registration at the local provider.
const (
	testClientID = "envoy-bff"
	testSecret   = "test-secret-5d2c"
	csrfHeader   = "X-CSRF"
)

// loginCookieName is the test session cookie's login-transaction cookie.
var loginCookieName = LoginCookieName(sessiontest.Config().Cookie.Name)

// env is one local provider and one Handler, each on its own httptest
// server, over the session memory store, all on one settable clock.
type env struct {
	t        *testing.T
	clock    *sessiontest.Clock
	provider *oidctest.Provider
	idp      *httptest.Server
	bff      *httptest.Server
	h        *Handler
	store    *countingStore
	cfg      Config
	logs     *syncBuffer

	tokenCalls atomic.Int64
	redisAddr  string // set by newRedisEnv
	// hooks replace provider endpoints (by path) while set.
	hooksMu sync.Mutex
	hooks   map[string]http.HandlerFunc
}

type envOptions struct {
	provider func(*oidctest.ProviderConfig)
	config   func(*Config)
	deps     func(*Deps)
	store    func(session.Config, func() time.Time) session.Store
	noStart  bool
	mtls     bool // the provider also serves its mTLS endpoint aliases
}

type envOption func(*envOptions)

func withProvider(f func(*oidctest.ProviderConfig)) envOption {
	return func(o *envOptions) { o.provider = f }
}
func withConfig(f func(*Config)) envOption { return func(o *envOptions) { o.config = f } }
func withDeps(f func(*Deps)) envOption     { return func(o *envOptions) { o.deps = f } }
func notStarted() envOption                { return func(o *envOptions) { o.noStart = true } }
func withMTLS() envOption                  { return func(o *envOptions) { o.mtls = true } }

// withStore replaces the memory store with another built over the test's session config and clock.
func withStore(f func(session.Config, func() time.Time) session.Store) envOption {
	return func(o *envOptions) { o.store = f }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	var o envOptions
	for _, f := range opts {
		f(&o)
	}
	e := &env{t: t, clock: sessiontest.NewClock(sessiontest.Epoch), logs: &syncBuffer{}, hooks: map[string]http.HandlerFunc{}}
	var bffHandler atomic.Pointer[Handler]
	e.bff = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bffHandler.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(e.bff.Close)

	pcfg := oidctest.ProviderConfig{
		Clients: []oidctest.Client{{
			ID:                     testClientID,
			Secret:                 testSecret,
			RedirectURIs:           []string{e.bff.URL + "/bff/callback"},
			PostLogoutRedirectURIs: []string{e.bff.URL + "/signed-out"},
		}},
		Now: e.clock.Now,
	}
	if o.provider != nil {
		o.provider(&pcfg)
	}
	p, err := oidctest.NewProvider(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	e.provider = p
	inner := p.Handler()
	e.idp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == oidctest.PathToken {
			e.tokenCalls.Add(1)
		}
		e.hooksMu.Lock()
		hook := e.hooks[r.URL.Path]
		e.hooksMu.Unlock()
		if hook != nil {
			hook(w, r)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(e.idp.Close)
	if err := p.SetIssuer(e.idp.URL); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Issuer = e.idp.URL
	cfg.ClientID = testClientID
	cfg.ClientSecret = testSecret
	cfg.RedirectURL = e.bff.URL + "/bff/callback"
	cfg.PostLogoutRedirectURL = e.bff.URL + "/signed-out"
	cfg.ProviderTimeout = 2 * time.Second
	if o.config != nil {
		o.config(&cfg)
	}
	e.cfg = cfg
	scfg := sessiontest.Config()
	var st session.Store = session.NewMemoryStore(scfg, sessiontest.KeyRing(t), e.clock.Now)
	if o.store != nil {
		st = o.store(scfg, e.clock.Now)
	}
	e.store = &countingStore{inner: st}
	deps := Deps{
		Store:            e.store,
		Cookie:           scfg.Cookie,
		Antiforgery:      AntiforgeryConfig{Header: csrfHeader, Value: "1"},
		Logger:           slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:              e.clock.Now,
		AbsoluteLifetime: scfg.AbsoluteLifetime,
		IdleTimeout:      scfg.IdleTimeout,
	}
	if o.mtls {
		deps.HTTPClient = mtlsClient(t, p)
	}
	if o.deps != nil {
		o.deps(&deps)
	}
	h, err := NewHandler(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	bffHandler.Store(h)
	if !o.noStart {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// hook replaces a provider endpoint until the test ends or unhook.
func (e *env) hook(path string, f http.HandlerFunc) {
	e.hooksMu.Lock()
	defer e.hooksMu.Unlock()
	e.hooks[path] = f
}

// discoveryWithout serves the provider's discovery document minus keys.
func (e *env) discoveryWithout(keys ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		e.provider.Handler().ServeHTTP(rec, r)
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		for _, k := range keys {
			delete(doc, k)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	}
}

// browser keeps the BFF origin's cookies itself (Go's jar will not send
// Secure cookies over plain http), follows no redirects on its own, and
// records every response it receives.
type browser struct {
	e       *env
	cookies map[string]string
	client  *http.Client
	mu      sync.Mutex
	seen    []response
}

type response struct {
	Status int
	Header http.Header
	Body   string
}

func (r response) location() string { return r.Header.Get("Location") }

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

// setCookie returns the Set-Cookie line for name, or "".
func (r response) setCookie(name string) string {
	for _, sc := range r.Header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, name+"=") {
			return sc
		}
	}
	return ""
}

func (e *env) browser() *browser {
	return &browser{e: e, cookies: map[string]string{}, client: &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends one request; cookies go only to the BFF.
func (b *browser) do(method, rawURL string, header http.Header) response {
	b.e.t.Helper()
	u, err := url.Parse(b.e.bff.URL)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if u, err = u.Parse(rawURL); err != nil {
		b.e.t.Fatal(err)
	}
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	toBFF := strings.HasPrefix(u.String(), b.e.bff.URL+"/")
	b.mu.Lock()
	if toBFF && len(b.cookies) > 0 {
		var pairs []string
		for k, v := range b.cookies {
			pairs = append(pairs, k+"="+v)
		}
		req.Header.Set("Cookie", strings.Join(pairs, "; "))
	}
	b.mu.Unlock()
	for k, vs := range header {
		if k == "Host" {
			req.Host = vs[0]
			continue
		}
		req.Header[k] = vs
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	r := response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = append(b.seen, r)
	if toBFF {
		for _, c := range resp.Cookies() {
			if c.MaxAge < 0 || c.Value == "" {
				delete(b.cookies, c.Name)
			} else {
				b.cookies[c.Name] = c.Value
			}
		}
	}
	return r
}

func (b *browser) get(rawURL string) response { return b.do(http.MethodGet, rawURL, nil) }

// api calls a path as the SPA's fetch does: with the anti-forgery header.
func (b *browser) api(rawURL string) response {
	return b.do(http.MethodGet, rawURL, http.Header{csrfHeader: {"1"}})
}

// startLogin calls /login and returns the provider authorization URL.
func (b *browser) startLogin(returnURL string) string {
	b.e.t.Helper()
	p := "/bff/login"
	if returnURL != "" {
		p += "?returnUrl=" + url.QueryEscape(returnURL)
	}
	r := b.get(p)
	if r.Status != http.StatusFound || !strings.HasPrefix(r.location(), b.e.idp.URL+"/") {
		b.e.t.Fatalf("/login: %d %q %s", r.Status, r.location(), r.Body)
	}
	return r.location()
}

// authorize follows the authorization URL at the provider and returns the
// callback URL it redirects to.
func (b *browser) authorize(authURL string) string {
	b.e.t.Helper()
	r := b.get(authURL)
	if r.Status != http.StatusFound || !strings.HasPrefix(r.location(), b.e.bff.URL+"/bff/callback") {
		b.e.t.Fatalf("authorize: %d %q %s", r.Status, r.location(), r.Body)
	}
	return r.location()
}

// login walks login → provider → callback and returns the callback's answer.
func (b *browser) login(returnURL string) response {
	b.e.t.Helper()
	r := b.get(b.authorize(b.startLogin(returnURL)))
	if r.Status != http.StatusFound {
		b.e.t.Fatalf("callback: %d %s", r.Status, r.Body)
	}
	return r
}

// sessionID is the browser's current session cookie, parsed.
func (b *browser) sessionID() session.ID {
	b.e.t.Helper()
	b.mu.Lock()
	v, ok := b.cookies["__Host-bff"]
	b.mu.Unlock()
	if !ok {
		b.e.t.Fatal("no session cookie")
	}
	id, err := session.ParseID(v)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return id
}

// everything is every header and body the browser received.
func (b *browser) everything() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	for _, r := range b.seen {
		for k, vs := range r.Header {
			for _, v := range vs {
				sb.WriteString(k + ": " + v + "\n")
			}
		}
		sb.WriteString(r.Body + "\n")
	}
	return sb.String()
}

// withQuery returns rawURL with its query replaced by edit's result.
func withQuery(t *testing.T, rawURL string, edit func(url.Values)) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	edit(q)
	u.RawQuery = q.Encode()
	return u.String()
}

// wantError checks a JSON deny answer.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type %q", ct)
	}
	m := r.json(t)
	if m["error"] != code {
		t.Errorf("error %v, want %s", m["error"], code)
	}
	if _, ok := m["error_description"].(string); !ok || len(m) != 2 {
		t.Errorf("deny body %s: want exactly error and error_description", r.Body)
	}
}

// countingStore wraps a store to count calls and inject faults.
type countingStore struct {
	inner session.Store

	gets, creates, updates, deletes, puts, takes, inspects atomic.Int64

	mu           sync.Mutex
	fail         map[string]error                         // method → error
	beforeUpdate func(ctx context.Context, id session.ID) // runs once, then is cleared
}

var _ session.Store = (*countingStore)(nil)

func (c *countingStore) failWith(method string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail == nil {
		c.fail = map[string]error{}
	}
	c.fail[method] = err
}

func (c *countingStore) err(method string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fail[method]
}

func (c *countingStore) lookups() int64 { return c.gets.Load() + c.takes.Load() + c.inspects.Load() }

func (c *countingStore) Get(ctx context.Context, id session.ID) (*sessionpb.Session, error) {
	c.gets.Add(1)
	if err := c.err("Get"); err != nil {
		return nil, err
	}
	return c.inner.Get(ctx, id)
}

// Inspect counts apart from Get (it must not slide) and fails as told for "Inspect".
func (c *countingStore) Inspect(ctx context.Context, id session.ID) (*sessionpb.Session, time.Time, error) {
	c.inspects.Add(1)
	if err := c.err("Inspect"); err != nil {
		return nil, time.Time{}, err
	}
	return c.inner.Inspect(ctx, id)
}

func (c *countingStore) Create(ctx context.Context, id session.ID, s *sessionpb.Session) error {
	c.creates.Add(1)
	if err := c.err("Create"); err != nil {
		return err
	}
	return c.inner.Create(ctx, id, s)
}

func (c *countingStore) Update(ctx context.Context, id session.ID, s *sessionpb.Session, prev uint64) error {
	c.updates.Add(1)
	c.mu.Lock()
	f := c.beforeUpdate
	c.beforeUpdate = nil
	c.mu.Unlock()
	if f != nil {
		f(ctx, id)
	}
	if err := c.err("Update"); err != nil {
		return err
	}
	return c.inner.Update(ctx, id, s, prev)
}

func (c *countingStore) Delete(ctx context.Context, id session.ID) error {
	c.deletes.Add(1)
	if err := c.err("Delete"); err != nil {
		return err
	}
	return c.inner.Delete(ctx, id)
}

func (c *countingStore) PutLoginState(ctx context.Context, state, browser string, ls *sessionpb.LoginState) error {
	c.puts.Add(1)
	if err := c.err("PutLoginState"); err != nil {
		return err
	}
	return c.inner.PutLoginState(ctx, state, browser, ls)
}

func (c *countingStore) TakeLoginState(ctx context.Context, state, browser string) (*sessionpb.LoginState, error) {
	c.takes.Add(1)
	if err := c.err("TakeLoginState"); err != nil {
		return nil, err
	}
	return c.inner.TakeLoginState(ctx, state, browser)
}

// errStoreDown is an injected store fault.
var errStoreDown = errors.Join(session.ErrUnavailable, errors.New("injected: connection refused"))

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func sessiontestEpoch() time.Time { return sessiontest.Epoch }

func (c *countingStore) TryLock(ctx context.Context, key session.LockKey) (*session.Lease, error) {
	if err := c.err("TryLock"); err != nil {
		return nil, err
	}
	return c.inner.TryLock(ctx, key)
}

func (c *countingStore) WaitUnlock(ctx context.Context, key session.LockKey) error {
	return c.inner.WaitUnlock(ctx, key)
}

func (c *countingStore) GetClientToken(ctx context.Context, name string) (*sessionpb.ClientToken, error) {
	c.gets.Add(1)
	return c.inner.GetClientToken(ctx, name)
}

func (c *countingStore) PutClientToken(ctx context.Context, name string, t *sessionpb.ClientToken) error {
	return c.inner.PutClientToken(ctx, name, t)
}

func (c *countingStore) FindSessions(ctx context.Context, issuer, subject, sid string) ([]session.Ref, error) {
	if err := c.err("FindSessions"); err != nil {
		return nil, err
	}
	return c.inner.FindSessions(ctx, issuer, subject, sid)
}

func (c *countingStore) GetByRef(ctx context.Context, ref session.Ref) (*sessionpb.Session, error) {
	return c.inner.GetByRef(ctx, ref)
}

func (c *countingStore) DeleteByRef(ctx context.Context, ref session.Ref) error {
	c.deletes.Add(1)
	if err := c.err("Delete"); err != nil {
		return err
	}
	return c.inner.DeleteByRef(ctx, ref)
}

func (c *countingStore) UseOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := c.err("UseOnce"); err != nil {
		return false, err
	}
	return c.inner.UseOnce(ctx, key, ttl)
}

func (c *countingStore) GetDerivedToken(ctx context.Context, id session.ID, profile string) (*sessionpb.ClientToken, error) {
	c.gets.Add(1)
	if err := c.err("GetDerivedToken"); err != nil {
		return nil, err
	}
	return c.inner.GetDerivedToken(ctx, id, profile)
}

func (c *countingStore) PutDerivedToken(ctx context.Context, id session.ID, profile string, t *sessionpb.ClientToken) error {
	if err := c.err("PutDerivedToken"); err != nil {
		return err
	}
	return c.inner.PutDerivedToken(ctx, id, profile, t)
}

// GetWithDerived counts as a Get and fails as Get is told to.
func (c *countingStore) GetWithDerived(ctx context.Context, id session.ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, error) {
	c.gets.Add(1)
	if err := c.err("Get"); err != nil {
		return nil, nil, err
	}
	return c.inner.GetWithDerived(ctx, id, profile)
}
