package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/envoy-bff/envoy-bff/authz"
	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// reloadEnv runs the frontends of a config file in this process, on the
// real memory store and a real local provider, as serve wires them.
type reloadEnv struct {
	t       *testing.T
	path    string
	issuer  string
	root    session.Backend
	apps    *apps
	watcher *configWatcher
	logs    *sessiontest.SyncBuffer
}

// frontendDoc is one frontends: item on host, with client id.
func frontendDoc(issuer, name, host, clientID string) string {
	return `
  - name: ` + name + `
    hosts: [` + host + `]
    oidc:
      issuer: ` + issuer + `
      client_id: ` + clientID + `
      client_secret: test-secret-5d2c
      redirect_url: https://` + host + `/bff/callback
    authz:
      path_rules: [{ prefix: /api/, policy: user }]`
}

func configDoc(items ...string) string {
	c := sessiontest.Config()
	return `session:
  backend: memory
  encryption_keys: [{ id: k1, secret: "` + c.EncryptionKeys[0].Secret + `" }]
  hash_key: "` + c.HashKey + `"
reload: { poll_interval: 0s }
frontends:` + strings.Join(items, "")
}

// newReloadEnv starts a provider, writes the config of items(issuer) and
// runs its frontends.
func newReloadEnv(t *testing.T, items func(issuer string) []string) *reloadEnv {
	t.Helper()
	p, err := oidctest.NewProvider(oidctest.ProviderConfig{Clients: []oidctest.Client{{ID: "shop", Secret: "test-secret-5d2c"}}})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := p.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	e := &reloadEnv{t: t, path: filepath.Join(t.TempDir(), "envoy-bff.yaml"), issuer: issuer, logs: &sessiontest.SyncBuffer{}}
	e.write(items(issuer)...)
	cfg, err := loadConfig(e.path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := session.OpenBackend(cfg.Session, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	reg := prometheus.NewRegistry()
	if e.root, err = session.Instrument(raw, reg); err != nil {
		t.Fatal(err)
	}
	traces, err := startTracing(t.Context(), cfg.Tracing)
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics, err := authz.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, nil))
	if e.apps, err = newApps(t.Context(), cfg, e.root, logger, reg, traces, checkMetrics); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.apps.stopAll(e.apps.list()) })
	e.watcher = newConfigWatcher(e.path, env(nil), cfg, e.apps, logger)
	return e
}

func (e *reloadEnv) write(items ...string) {
	e.t.Helper()
	if err := os.WriteFile(e.path, []byte(configDoc(items...)), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// login stores a session in frontend name's store, as its callback would.
func (e *reloadEnv) login(name string, seed byte) string {
	e.t.Helper()
	view, err := e.root.Frontend(name, sessiontest.Config().FrontendDefaults())
	if err != nil {
		e.t.Fatal(err)
	}
	id, err := session.NewID(bytes.NewReader(bytes.Repeat([]byte{seed}, session.IDLen)))
	if err != nil {
		e.t.Fatal(err)
	}
	rec := &sessionpb.Session{SchemaVersion: 1, Issuer: e.issuer, Subject: "u-" + name, AccessToken: "at-" + name,
		AccessTokenExpiresAtUnixMs: time.Now().Add(time.Hour).UnixMilli(), AbsoluteExpiresAtUnixMs: time.Now().Add(time.Hour).UnixMilli()}
	if err := view.Create(context.Background(), id, rec); err != nil {
		e.t.Fatal(err)
	}
	return id.String()
}

// check is an API call on host with the session cookie value v; it returns
// the status and the error code of a denial.
func (e *reloadEnv) check(host, v string) (int, string) {
	e.t.Helper()
	resp, err := e.apps.checker.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/x", Host: host,
			Headers: map[string]string{"x-csrf": "1", "cookie": "__Host-bff=" + v},
		}},
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.GetOkResponse() != nil {
		return 200, ""
	}
	var body struct{ Error string }
	_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), body.Error
}

// browser asks host's /bff/user through the browser listener's router.
func (e *reloadEnv) browser(host string) (int, string) {
	e.t.Helper()
	r := httptest.NewRequest("GET", "https://"+host+"/bff/user", nil)
	r.Header.Set("X-CSRF", "1")
	w := httptest.NewRecorder()
	e.apps.router.ServeHTTP(w, r)
	var body struct{ Error string }
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return w.Code, body.Error
}

// app is the running frontend name, nil when none.
func (e *reloadEnv) app(name string) *app {
	for _, p := range e.apps.list() {
		if p.cfg.Name == name {
			return p
		}
	}
	return nil
}

// TestReloadFrontends: a reload adds, changes and removes frontends
// without a restart; an unchanged frontend keeps running as it was, its
// sessions untouched; a removed one's routes are frontend_unknown; a
// config that does not validate changes nothing (T73).
func TestReloadFrontends(t *testing.T) {
	t.Parallel()
	shopDoc := func(issuer string) string { return frontendDoc(issuer, "shop", "shop.example.com", "shop") }
	e := newReloadEnv(t, func(issuer string) []string {
		return []string{shopDoc(issuer), frontendDoc(issuer, "admin", "admin.example.com", "admin")}
	})
	shopSession, adminSession := e.login("shop", 1), e.login("admin", 2)
	if s, c := e.check("shop.example.com", shopSession); s != 200 {
		t.Fatalf("shop before reload: %d %s", s, c)
	}
	if s, _ := e.check("admin.example.com", adminSession); s != 200 {
		t.Fatalf("admin before reload: %d", s)
	}
	shopApp := e.app("shop")

	// A config that does not validate: refused whole, logged, nothing moves.
	e.write(shopDoc(e.issuer), frontendDoc("ftp://bad", "admin", "admin.example.com", "admin"), frontendDoc(e.issuer, "docs", "docs.example.com", "docs"))
	e.watcher.reload("test")
	if !strings.Contains(e.logs.String(), "config reload refused") || !strings.Contains(e.logs.String(), "frontends[admin].oidc.issuer") {
		t.Fatalf("a refused reload was not logged with its field:\n%s", e.logs.String())
	}
	if e.app("docs") != nil || e.app("shop") != shopApp {
		t.Fatal("a refused reload changed the frontends")
	}
	if s, _ := e.check("admin.example.com", adminSession); s != 200 {
		t.Fatalf("admin after a refused reload: %d", s)
	}

	// admin changes client, docs comes, shop stays as it is.
	e.write(shopDoc(e.issuer), frontendDoc(e.issuer, "admin", "admin.example.com", "admin-2"), frontendDoc(e.issuer, "docs", "docs.example.com", "docs"))
	e.watcher.reload("test")
	if e.app("shop") != shopApp {
		t.Error("an unchanged frontend was rebuilt")
	}
	if e.app("admin") == nil || e.app("admin").cfg.OIDC.ClientID != "admin-2" {
		t.Error("the changed frontend was not applied")
	}
	if s, c := e.check("shop.example.com", shopSession); s != 200 {
		t.Fatalf("shop's session after a reload that did not touch shop: %d %s", s, c)
	}
	if s, c := e.check("admin.example.com", adminSession); s != 200 {
		t.Fatalf("admin's session after admin's client changed: %d %s (its sessions live in its store, by name)", s, c)
	}
	if s, c := e.browser("docs.example.com"); s != 401 {
		t.Fatalf("the added frontend's /bff/user: %d %s, want 401 (anonymous)", s, c)
	}

	// admin goes: its routes and endpoints are frontend_unknown.
	e.write(shopDoc(e.issuer), frontendDoc(e.issuer, "docs", "docs.example.com", "docs"))
	e.watcher.reload("test")
	if s, c := e.check("admin.example.com", adminSession); s != 403 || c != "frontend_unknown" {
		t.Fatalf("a removed frontend's API: %d %s, want 403 frontend_unknown", s, c)
	}
	if s, c := e.browser("admin.example.com"); s != 404 || c != "frontend_unknown" {
		t.Fatalf("a removed frontend's /bff/user: %d %s, want 404 frontend_unknown", s, c)
	}
	if s, _ := e.check("shop.example.com", shopSession); s != 200 {
		t.Fatalf("shop after admin's removal: %d", s)
	}
	if !strings.Contains(e.logs.String(), `"removed":["admin"]`) {
		t.Errorf("the reload's log line does not name the removed frontend:\n%s", e.logs.String())
	}
}

// TestRestartOnly: a reload warns only about what it cannot apply; the
// session cookie and lifetimes that frontends inherit are applied.
func TestRestartOnly(t *testing.T) {
	t.Parallel()
	running := defaultConfig()
	w := &configWatcher{running: running}
	next := running
	next.Session.IdleTimeout = time.Minute
	next.Session.Cookie.SameSite = "strict"
	if got := w.restartOnly(next); len(got) != 0 {
		t.Errorf("inherited session settings reported as needing a restart: %v", got)
	}
	next.Session.KeyPrefix = "other:"
	next.Listen.GRPC = "127.0.0.1:1"
	if got := strings.Join(w.restartOnly(next), ","); got != "listen,session" {
		t.Errorf("restartOnly = %s, want listen,session", got)
	}
}
