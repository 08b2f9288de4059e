package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/envoy-bff/envoy-bff/authz"
	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/session"
)

// apps are the frontends a replica serves. Check reaches them through
// checker, the browser endpoints through router; a config reload replaces
// them whole (apply), keeping every frontend whose settings did not change
// with its provider, cache and sessions as they were.
type apps struct {
	root    session.Backend // instrumented; each frontend gets its own view
	global  config          // the sections every frontend shares
	logger  *slog.Logger
	now     func() time.Time
	reg     prometheus.Registerer
	metrics *oidcflow.Metrics
	traces  *tracing
	runCtx  context.Context // ends when the process stops

	checker *authz.Server
	router  *oidcflow.Router

	mu      sync.Mutex // one apply at a time
	current atomic.Pointer[[]*app]
}

// app is one running frontend.
type app struct {
	cfg      frontendConfig
	flow     *oidcflow.Handler
	check    authz.Frontend
	cache    *session.Cache // nil without session.cache
	stop     context.CancelFunc
	bg       sync.WaitGroup
	unreg    func() // takes its cache's metrics out again
	unregMu  sync.Mutex
	finished atomic.Bool
}

// newApps builds and starts every frontend of cfg and the servers that
// route to them.
func newApps(runCtx context.Context, cfg config, root session.Backend, logger *slog.Logger, reg prometheus.Registerer, traces *tracing, checkMetrics *authz.Metrics) (*apps, error) {
	metrics, err := oidcflow.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	a := &apps{root: root, global: cfg, logger: logger, now: time.Now, reg: reg, metrics: metrics, traces: traces, runCtx: runCtx}
	list, err := a.buildAll(cfg.frontendList(), nil)
	if err != nil {
		return nil, err
	}
	checks, routes, handlers := a.parts(list)
	a.checker, err = authz.NewFrontendServer(authz.Deps{
		Metrics:     checkMetrics,
		Antiforgery: cfg.Antiforgery,
		Logger:      logger,
		Now:         a.now,
		Tracer:      traces.tracer(),
	}, checks)
	if err == nil {
		a.router, err = oidcflow.NewRouter(routes, handlers, logger)
	}
	if err != nil {
		a.stopAll(list)
		return nil, fmt.Errorf("build frontends: %w", err)
	}
	a.current.Store(&list)
	a.registerCaches(list)
	return a, nil
}

// list is the frontends served now, in configuration order.
func (a *apps) list() []*app { return *a.current.Load() }

// apply makes cfg's frontends the served ones: unchanged frontends stay as
// they are, changed and new ones are built and started, removed ones are
// stopped after the swap. On any error nothing changes.
func (a *apps) apply(cfg config) (added, changed, removed []string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.list()
	byName := make(map[string]*app, len(old))
	for _, p := range old {
		byName[p.cfg.Name] = p
	}
	next, err := a.buildAll(cfg.frontendList(), byName)
	if err != nil {
		return nil, nil, nil, err
	}
	fresh := func() []*app {
		var out []*app
		for _, p := range next {
			if byName[p.cfg.Name] != p {
				out = append(out, p)
			}
		}
		return out
	}()
	checks, routes, handlers := a.parts(next)
	if err := a.checker.SetFrontends(checks); err != nil {
		a.stopAll(fresh)
		return nil, nil, nil, fmt.Errorf("apply frontends: %w", err)
	}
	if err := a.router.Set(routes, handlers); err != nil {
		prevChecks, _, _ := a.parts(old)
		_ = a.checker.SetFrontends(prevChecks) // it held them a moment ago
		a.stopAll(fresh)
		return nil, nil, nil, fmt.Errorf("apply frontends: %w", err)
	}
	a.current.Store(&next)

	kept := map[*app]bool{}
	for _, p := range next {
		kept[p] = true
	}
	var gone []*app
	for _, p := range old {
		if !kept[p] {
			gone = append(gone, p)
		}
	}
	// The old frontends' caches leave the registry before the new ones
	// register under the same names.
	a.stopAll(gone)
	a.registerCaches(fresh)
	for _, p := range fresh {
		if byName[p.cfg.Name] != nil {
			changed = append(changed, p.cfg.Name)
		} else {
			added = append(added, p.cfg.Name)
		}
	}
	for _, p := range gone {
		if !slicesContainsName(next, p.cfg.Name) {
			removed = append(removed, p.cfg.Name)
		}
	}
	return added, changed, removed, nil
}

func slicesContainsName(list []*app, name string) bool {
	for _, p := range list {
		if p.cfg.Name == name {
			return true
		}
	}
	return false
}

// buildAll builds every frontend of list, reusing the running one from
// running where its settings are unchanged. On error it stops what it built.
func (a *apps) buildAll(list []frontendConfig, running map[string]*app) ([]*app, error) {
	var out, built []*app
	for _, f := range list {
		if p, ok := running[f.Name]; ok && reflect.DeepEqual(p.cfg, f) {
			out = append(out, p)
			continue
		}
		p, err := a.build(f)
		if err != nil {
			a.stopAll(built)
			return nil, fmt.Errorf("frontends[%s]: %w", f.Name, err)
		}
		built = append(built, p)
		out = append(out, p)
	}
	return out, nil
}

// build makes one frontend and starts its background work: provider
// discovery, and the session cache's subscription.
func (a *apps) build(f frontendConfig) (*app, error) {
	view, err := a.root.Frontend(f.Name, f.Session)
	if err != nil {
		return nil, fmt.Errorf("open its session store: %w", err)
	}
	// The browser endpoints answer CORS for the origins the APIs do.
	origins, err := oidcflow.ParseOrigins("authz.allowed_origins", f.Authz.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	base, err := f.OIDC.ProviderTransport()
	if err != nil {
		return nil, fmt.Errorf("oidc.%w", err)
	}
	deps := oidcflow.Deps{
		AllowedOrigins: origins,
		Store:          view,
		Cookie:         f.Session.Cookie,
		Antiforgery:    a.global.Antiforgery,
		Logger:         a.logger,
		Now:            a.now,
		Rand:           rand.Reader,
		// base trusts oidc.ca_file's CAs when set; the client certificate
		// (tls_client_cert_file) is added to a clone of it.
		HTTPClient:       &http.Client{Timeout: f.OIDC.ProviderTimeout, Transport: base},
		WrapTransport:    a.traces.transport, // inside client authentication (and DPoP)
		AbsoluteLifetime: f.Session.AbsoluteLifetime,
		IdleTimeout:      f.Session.IdleTimeout,
		Metrics:          a.metrics,
		Frontend:         f.Name,
		Home:             f.PathPrefix,
	}
	flow, err := oidcflow.NewHandler(f.OIDC, deps)
	if err != nil {
		return nil, fmt.Errorf("build browser endpoints: %w", err)
	}
	deps.Provider = flow.Provider()
	clients, err := oidcflow.NewClientTokens(withClientProfiles(f.OIDC, f.Tokens), deps)
	if err != nil {
		return nil, fmt.Errorf("build client tokens: %w", err)
	}
	profiles, err := oidcflow.NewDerivedTokens(f.OIDC, f.Tokens, deps)
	if err != nil {
		return nil, fmt.Errorf("build token profiles: %w", err)
	}
	var reader authz.SessionReader = view
	var cache *session.Cache
	if a.global.Session.Cache.TTL > 0 {
		if cache, err = session.NewCache(view, a.global.Session.Cache, a.now); err != nil {
			return nil, fmt.Errorf("build session cache: %w", err)
		}
		reader = cache
	}
	ctx, cancel := context.WithCancel(a.runCtx)
	p := &app{
		cfg:   f,
		flow:  flow,
		cache: cache,
		stop:  cancel,
		check: authz.Frontend{
			Route:        f.route(),
			Config:       f.Authz,
			Sessions:     reader,
			Refresher:    flow.Refresher(),
			ClientTokens: clients,
			Cookie:       f.Session.Cookie,
			Tokens:       profiles,
		},
	}
	p.bg.Go(func() { _ = flow.Start(ctx) })
	if cache != nil {
		p.bg.Go(func() { cache.Run(ctx) })
	}
	return p, nil
}

// parts are what authz and the Router need of list.
func (a *apps) parts(list []*app) (checks []authz.Frontend, routes []oidcflow.Route, handlers []http.Handler) {
	for _, p := range list {
		checks = append(checks, p.check)
		routes = append(routes, p.cfg.route())
		handlers = append(handlers, p.flow)
	}
	return checks, routes, handlers
}

// registerCaches exposes the caches' metrics; a failure costs metrics only.
func (a *apps) registerCaches(list []*app) {
	for _, p := range list {
		if p.cache == nil {
			continue
		}
		unreg, err := p.cache.Register(a.reg)
		if err != nil {
			a.logger.Warn("session cache metrics not registered", oidcflow.FrontendAttr, p.cfg.Name, "error", err)
			continue
		}
		p.unregMu.Lock()
		p.unreg = unreg
		p.unregMu.Unlock()
	}
}

// stopAll ends the background work of every app in list and waits for it.
func (a *apps) stopAll(list []*app) {
	for _, p := range list {
		if p.finished.Swap(true) {
			continue
		}
		p.stop()
		p.bg.Wait()
		p.unregMu.Lock()
		if p.unreg != nil {
			p.unreg()
		}
		p.unregMu.Unlock()
	}
}

// sessions are every frontend's session administration, for the admin API.
func (a *apps) sessions() []*oidcflow.Sessions {
	var out []*oidcflow.Sessions
	for _, p := range a.list() {
		out = append(out, p.flow.Sessions())
	}
	return out
}

// frontendReady is one line of /readyz.
type frontendReady struct {
	name  string
	ready bool
}

// readiness reports, per frontend, whether its provider is discovered.
func (a *apps) readiness() []frontendReady {
	var out []frontendReady
	for _, p := range a.list() {
		out = append(out, frontendReady{name: p.cfg.Name, ready: p.flow.Ready()})
	}
	return out
}
