package main

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/envoy-bff/envoy-bff/authz"
	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/session"
)

// frontendConfig is one item of `frontends:`: one app and every setting that
// is its own. What it leaves out comes from the package defaults, and for
// `session:` from the top-level session section.
type frontendConfig struct {
	// Name is [a-z0-9-]{1,32}: the metric and log label, part of its Redis
	// keys, and in its variables' names (ENVOY_BFF_FRONTENDS_<NAME>_…, upper
	// case, - as _).
	Name string `yaml:"name"`
	// Hosts are the exact hosts it serves, port ignored; none means any host.
	Hosts []string `yaml:"hosts"`
	// PathPrefix is where the app lives: its browser endpoints are at
	// <path_prefix>bff/….
	PathPrefix string                 `yaml:"path_prefix"`
	OIDC       oidcflow.Config        `yaml:"oidc"`
	Session    session.FrontendConfig `yaml:"session"`
	Authz      authz.Config           `yaml:"authz"`
	// Tokens are the frontend's token profiles; see [token profiles](tokens.md).
	Tokens oidcflow.TokenProfiles `yaml:"tokens"`
}

// route is where the frontend lives, for selection.
func (f frontendConfig) route() oidcflow.Route {
	return oidcflow.Route{Name: f.Name, Hosts: f.Hosts, PathPrefix: f.PathPrefix}
}

// field names f in error messages: frontends[shop], or by position while
// its name is unusable.
func (f frontendConfig) field(i int) string {
	if f.Name == "" {
		return fmt.Sprintf("frontends[%d]", i)
	}
	return "frontends[" + f.Name + "]"
}

// legacySections are the top-level sections that hold a frontend's settings
// in a config without `frontends:`; with it, they must be left out.
var legacySections = []string{"oidc", "authz", "tokens"}

// newFrontend is a frontend before its item is decoded over it: the package
// defaults, the top-level session section's cookie and lifetimes, and the
// paths left to resolve.
func newFrontend(global session.Config) frontendConfig {
	f := frontendConfig{
		PathPrefix: "/",
		OIDC:       oidcflow.DefaultConfig(),
		Session:    global.FrontendDefaults(),
		Authz:      authz.DefaultConfig(),
	}
	f.OIDC.PathPrefix = "" // derived from path_prefix unless given
	f.Authz.LoginPath = "" // likewise
	return f
}

// decodeFrontends decodes each raw `frontends:` item strictly over its
// defaults. It runs after the whole file is read, so an item inherits the
// top-level session section wherever that stands in the file.
func decodeFrontends(nodes []yaml.Node, global session.Config) ([]frontendConfig, []error) {
	var out []frontendConfig
	var errs []error
	for i := range nodes {
		f := newFrontend(global)
		// Node.Decode cannot refuse unknown keys: re-encode the item and
		// decode it with a strict decoder, so a misspelt field is an error.
		raw, err := yaml.Marshal(&nodes[i])
		if err == nil {
			dec := yaml.NewDecoder(strings.NewReader(string(raw)))
			dec.KnownFields(true)
			err = dec.Decode(&f)
		}
		if err != nil {
			// The decoder counts lines from the item, not the file.
			errs = append(errs, fmt.Errorf("%s (the item at line %d of the file): %w", f.field(i), nodes[i].Line, err))
			continue
		}
		out = append(out, f)
	}
	return out, errs
}

// resolve fills what follows from the frontend's own path prefix: its
// browser endpoints live at <path_prefix>bff/… and navigations log in there.
func (f *frontendConfig) resolve() {
	if f.OIDC.PathPrefix == "" {
		f.OIDC.PathPrefix = strings.TrimSuffix(f.PathPrefix, "/") + "/bff"
	}
	if f.Authz.LoginPath == "" {
		f.Authz.LoginPath = f.OIDC.PathPrefix + "/login"
	}
}

// frontendEnvPrefix is the environment prefix of frontend name's fields:
// ENVOY_BFF_FRONTENDS_<NAME>_, the name upper-cased with - as _.
func frontendEnvPrefix(name string) string {
	return envPrefix + "FRONTENDS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
}

// validateFrontends checks each frontend's sections and what spans them:
// where they live (oidcflow.ValidateRoutes) and which cookies a browser
// could mix up.
func (c config) validateFrontends() []error {
	var errs []error
	routes := make([]oidcflow.Route, len(c.Frontends))
	for i, f := range c.Frontends {
		routes[i] = f.route()
		field := f.field(i)
		errs = append(errs, prefixed(field+".oidc", f.OIDC.Validate())...)
		errs = append(errs, prefixed(field+".session", f.Session.Validate())...)
		errs = append(errs, prefixed(field+".authz", f.Authz.Validate())...)
		errs = append(errs, prefixed(field+".tokens", f.Tokens.Validate(f.OIDC))...)
		errs = append(errs, prefixed(field, errors.Join(crossCheck(c.Session, f.OIDC, f.Authz, f.Tokens)...))...)
	}
	errs = append(errs, oidcflow.ValidateRoutes(routes)...)
	errs = append(errs, cookieClashes(c.Frontends)...)
	return errs
}

// cookieClashes refuses two frontends a browser could send one cookie to
// (their hosts overlap; no hosts is every host) that name the same session
// or login cookie: one would read, or overwrite, the other's. __Host-
// cookies are always Path=/, so path prefixes do not keep them apart.
func cookieClashes(list []frontendConfig) []error {
	var errs []error
	for i, a := range list {
		for j, b := range list[:i] {
			if !oidcflow.HostsOverlap(a.Hosts, b.Hosts) {
				continue
			}
			mine := []string{a.Session.Cookie.Name, oidcflow.LoginCookieName(a.Session.Cookie.Name)}
			theirs := []string{b.Session.Cookie.Name, oidcflow.LoginCookieName(b.Session.Cookie.Name)}
			for _, m := range mine {
				for _, t := range theirs {
					if m == t {
						errs = append(errs, fmt.Errorf("%s.session.cookie.name: %s uses cookie %s too on an overlapping host; give each its own name",
							a.field(i), b.field(j), m))
					}
				}
			}
		}
	}
	return errs
}

// prefixed flattens err (a Join of field errors, or one) and puts name.
// before each, so every line names its whole field path.
func prefixed(name string, err error) []error {
	if err == nil {
		return nil
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	out := make([]error, len(list))
	for i, e := range list {
		out[i] = fmt.Errorf("%s.%w", name, e)
	}
	return out
}

// frontendList is every frontend the config serves: its `frontends:`, or
// the one named default built from the top-level sections.
func (c config) frontendList() []frontendConfig {
	if len(c.Frontends) > 0 {
		return c.Frontends
	}
	return []frontendConfig{{
		Name:       session.DefaultFrontend,
		PathPrefix: "/",
		OIDC:       c.OIDC,
		Session:    c.Session.FrontendDefaults(),
		Authz:      c.Authz,
		Tokens:     c.Tokens,
	}}
}

// withClientProfiles is oidc with the client profiles of tokens added to
// its client tokens: ClientTokens serves both.
func withClientProfiles(oidc oidcflow.Config, tokens oidcflow.TokenProfiles) oidcflow.Config {
	extra := tokens.ClientTokenConfigs()
	if len(extra) == 0 {
		return oidc
	}
	merged := maps.Clone(oidc.ClientTokens)
	if merged == nil {
		merged = map[string]oidcflow.ClientTokenConfig{}
	}
	maps.Copy(merged, extra)
	oidc.ClientTokens = merged
	return oidc
}
