package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/envoy-bff/envoy-bff/authz"
	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/session"
)

// config is the whole config file. Each section belongs to the package that
// uses it; cmd only loads, overrides from the environment and validates.
type config struct {
	Listen      listenConfig               `yaml:"listen"`
	Log         logConfig                  `yaml:"log"`
	Session     session.Config             `yaml:"session"`
	OIDC        oidcflow.Config            `yaml:"oidc"`
	Antiforgery oidcflow.AntiforgeryConfig `yaml:"antiforgery"`
	Authz       authz.Config               `yaml:"authz"`
	Tracing     tracingConfig              `yaml:"tracing"`
	Reload      reloadConfig               `yaml:"reload"`
	// Tokens are the token profiles of a config without frontends (in a
	// frontend: `frontends[].tokens`): a route names one to choose the token
	// its API gets; see [token profiles](tokens.md).
	Tokens oidcflow.TokenProfiles `yaml:"tokens"`
	// FrontendNodes are the raw `frontends:` items, decoded into Frontends
	// once the whole file is read (see decodeFrontends).
	// See [Frontends](frontends.md): each with its own oidc, authz and
	// session cookie and lifetimes. Without it, one app named default from
	// the top-level sections.
	FrontendNodes []yaml.Node `yaml:"frontends"`
	// Frontends are the apps served; empty means the one named default,
	// built from the top-level oidc, authz and session sections.
	Frontends []frontendConfig `yaml:"-"`
}

// listenConfig is where the three listeners bind.
type listenConfig struct {
	// GRPC is the ext_authz gRPC listener (Envoy's `bff_grpc` cluster).
	GRPC string `yaml:"grpc"`
	// HTTP is the browser endpoints' listener (Envoy routes `/bff/*` here).
	HTTP string `yaml:"http"`
	// Admin serves `/healthz`, `/readyz`, `/metrics` and `/admin/sessions`;
	// keep it on loopback.
	Admin string `yaml:"admin"`
	// AdminToken is the bearer token for `/admin/sessions` (16+
	// characters); required when `listen.admin` is not a loopback address.
	AdminToken string `yaml:"admin_token"`
	// ShutdownTimeout is how long SIGTERM then waits for in-flight
	// requests, after `drain_delay`.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// DrainDelay is how long a stopping replica keeps serving after it
	// has turned unready (/readyz 503, gRPC health NOT_SERVING), so Envoy's
	// health checks move traffic away before the listeners close. It must
	// exceed the health-check interval (1s in envoy/envoy.yaml.tmpl); at
	// most 1m. See [Graceful shutdown and rolling restarts](operations.md#graceful-shutdown-and-rolling-restarts).
	DrainDelay time.Duration `yaml:"drain_delay"`
}

// logConfig shapes the structured log.
type logConfig struct {
	// Level is `debug`, `info`, `warn` or `error`.
	Level string `yaml:"level"`
	// Format is `json` (lines on stderr) or `text` (for people).
	Format string `yaml:"format"`
}

// maxDrainDelay bounds listen.drain_delay: Kubernetes' default grace period
// is 30s, and the delay comes before the shutdown timeout.
const maxDrainDelay = time.Minute

func defaultConfig() config {
	return config{
		Listen: listenConfig{
			GRPC:            "127.0.0.1:9001",
			HTTP:            "127.0.0.1:9002",
			Admin:           "127.0.0.1:9003",
			ShutdownTimeout: 15 * time.Second,
			DrainDelay:      5 * time.Second,
		},
		Log:         logConfig{Level: "info", Format: "json"},
		Session:     session.DefaultConfig(),
		OIDC:        oidcflow.DefaultConfig(),
		Antiforgery: oidcflow.AntiforgeryConfig{Header: "X-CSRF", Value: "1"},
		Authz:       authz.DefaultConfig(),
		Tracing:     defaultTracingConfig(),
		Reload:      reloadConfig{PollInterval: 5 * time.Second},
	}
}

// loadConfig reads the YAML file at path (strictly: unknown keys are errors),
// applies ENVOY_BFF_* overrides and validates the result, reporting every bad
// field at once. path may be empty: then defaults and the environment alone.
func loadConfig(path string, lookup func(string) (string, bool)) (config, error) {
	cfg := defaultConfig()
	var raw []byte
	if path != "" {
		var err error
		if raw, err = os.ReadFile(path); err != nil {
			return config{}, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return config{}, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	errs := applyEnv(&cfg, envPrefix, lookup)
	if len(cfg.FrontendNodes) > 0 {
		errs = append(errs, cfg.loadFrontends(raw, lookup)...)
	}
	cfg.applyDerivedDefaults()
	errs = append(errs, cfg.validate()...)
	if len(errs) > 0 {
		return config{}, &configError{errs: errs}
	}
	return cfg, nil
}

// applyDerivedDefaults fills the defaults that follow from other fields:
// navigations log in under the browser endpoints' prefix.
func (c *config) applyDerivedDefaults() {
	if c.Authz.LoginPath == "" {
		c.Authz.LoginPath = strings.TrimRight(c.OIDC.PathPrefix, "/") + "/login"
	}
}

// loadFrontends decodes `frontends:` over its defaults, applies each
// frontend's ENVOY_BFF_FRONTENDS_<NAME>_* variables, and refuses the
// top-level sections it replaces.
func (c *config) loadFrontends(raw []byte, lookup func(string) (string, bool)) []error {
	var errs []error
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &top); err == nil {
		for _, s := range legacySections {
			if _, ok := top[s]; ok {
				errs = append(errs, fmt.Errorf("%s: not allowed with frontends: move it into each frontend", s))
			}
		}
	}
	for _, f := range envFields(&config{}, envPrefix) {
		for _, s := range legacySections {
			if _, ok := lookup(f.env); ok && strings.HasPrefix(f.path, s+".") {
				errs = append(errs, fmt.Errorf("%s (from %s): not allowed with frontends: use %s…", f.path, f.env, frontendEnvPrefix("<name>")))
			}
		}
	}
	list, decodeErrs := decodeFrontends(c.FrontendNodes, c.Session)
	errs = append(errs, decodeErrs...)
	for i := range list {
		f := &list[i]
		for _, err := range applyEnv(f, frontendEnvPrefix(f.Name), lookup) {
			errs = append(errs, fmt.Errorf("%s.%w", f.field(i), err))
		}
		f.resolve()
	}
	c.Frontends = list
	return errs
}

// configError lists every bad field, one per line.
type configError struct{ errs []error }

func (e *configError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem(s)):", len(e.errs))
	for _, err := range e.errs {
		b.WriteString("\n  - ")
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *configError) Unwrap() []error { return e.errs }

func (c config) validate() []error {
	var errs []error
	section := func(name string, err error) {
		if err == nil {
			return
		}
		var list []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			list = j.Unwrap()
		} else {
			list = []error{err}
		}
		for _, e := range list {
			errs = append(errs, fmt.Errorf("%s.%w", name, e))
		}
	}
	section("listen", c.Listen.validate())
	section("log", c.Log.validate())
	section("session", c.Session.Validate())
	section("antiforgery", validateAntiforgery(c.Antiforgery))
	section("tracing", c.Tracing.validate())
	section("reload", c.Reload.validate())
	if len(c.FrontendNodes) > 0 {
		return append(errs, c.validateFrontends()...)
	}
	section("oidc", c.OIDC.Validate())
	section("authz", c.Authz.Validate())
	section("tokens", c.Tokens.Validate(c.OIDC))
	errs = append(errs, crossCheck(c.Session, c.OIDC, c.Authz, c.Tokens)...)
	return errs
}

// crossCheck validates what spans one frontend's oidc and authz and the
// global session section, naming the field to change.
func crossCheck(sess session.Config, oidc oidcflow.Config, az authz.Config, tokens oidcflow.TokenProfiles) []error {
	var errs []error
	if sess.LockTTL > 0 && oidc.ProviderTimeout > 0 && sess.LockTTL <= oidc.ProviderTimeout {
		// The lock renews itself, but a holder that dies between renewals
		// must not leave it to a second refresh while its call may still land.
		errs = append(errs, fmt.Errorf("session.lock_ttl: must be longer than oidc.provider_timeout (%s), got %s",
			oidc.ProviderTimeout, sess.LockTTL))
	}
	if sess.Backend == session.BackendRedis && az.CheckTimeout > 0 {
		// A Check that cannot fit one Redis command always times out: every
		// request would be a 503 while Redis is perfectly healthy.
		if b := sess.Redis.CommandBudget(); az.CheckTimeout <= b {
			errs = append(errs, fmt.Errorf("authz.check_timeout: must be longer than one Redis command can take "+
				"(session.redis pool_timeout + dial_timeout + write_timeout + read_timeout = %s), got %s", b, az.CheckTimeout))
		}
	}
	for _, name := range az.TokenProfileNames() {
		if _, ok := tokens[name]; !ok {
			errs = append(errs, fmt.Errorf("tokens: %q is named by an authz rule's token but not defined", name))
		}
	}
	oidc = withClientProfiles(oidc, tokens)
	for _, name := range az.ClientTokenNames() {
		if _, ok := oidc.ClientTokens[name]; !ok {
			errs = append(errs, fmt.Errorf("oidc.client_tokens: %q is used by an authz rule with a client policy but not defined", name))
		}
	}
	return errs
}

func (l listenConfig) validate() error {
	var errs []error
	seen := map[string]string{}
	for _, f := range []struct{ name, addr string }{{"grpc", l.GRPC}, {"http", l.HTTP}, {"admin", l.Admin}} {
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: must be host:port, got %q", f.name, f.addr))
			continue
		}
		if other, dup := seen[f.addr]; dup {
			errs = append(errs, fmt.Errorf("%s: same address as %s", f.name, other))
		}
		seen[f.addr] = f.name
	}
	if l.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown_timeout: must be positive"))
	}
	if l.DrainDelay < 0 || l.DrainDelay > maxDrainDelay {
		errs = append(errs, fmt.Errorf("drain_delay: must be between 0 and %s, got %s", maxDrainDelay, l.DrainDelay))
	}
	if host, _, err := net.SplitHostPort(l.Admin); err == nil && l.AdminToken == "" && !isLoopback(host) {
		// The admin listener ends sessions: off loopback it needs a credential.
		errs = append(errs, fmt.Errorf("admin_token: required when admin listens beyond loopback (%s)", l.Admin))
	}
	if l.AdminToken != "" && len(l.AdminToken) < 16 {
		errs = append(errs, errors.New("admin_token: must be at least 16 characters"))
	}
	return errors.Join(errs...)
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (l logConfig) validate() error {
	var errs []error
	if _, err := parseLevel(l.Level); err != nil {
		errs = append(errs, fmt.Errorf("level: %w", err))
	}
	if l.Format != "json" && l.Format != "text" {
		errs = append(errs, fmt.Errorf("format: must be json or text, got %q", l.Format))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
	}
	return lvl, nil
}

func validateAntiforgery(a oidcflow.AntiforgeryConfig) error {
	var errs []error
	if a.Header == "" || strings.ContainsAny(a.Header, " \t\r\n:_") {
		errs = append(errs, fmt.Errorf("header: must be a header name without spaces, colons or underscores, got %q", a.Header))
	}
	if a.Value == "" {
		errs = append(errs, errors.New("value: required"))
	}
	return errors.Join(errs...)
}
