package session

import (
	"errors"
	"fmt"
	"time"
)

// DefaultFrontend names the frontend of a config without `frontends:`. Its
// view keeps the store's original key layout, so a deployment upgraded in
// place keeps its sessions.
const DefaultFrontend = "default"

// maxFrontendName bounds a frontend's name, which appears in every key of its view.
const maxFrontendName = 32

// FrontendConfig is what one frontend's `session:` section may set for
// itself; everything else about the store (Redis, keys, key_prefix) is
// shared by all frontends.
type FrontendConfig struct {
	// Cookie shapes this frontend's session cookie.
	Cookie CookieConfig `yaml:"cookie"`
	// IdleTimeout ends a session of this frontend not used for this long (sliding).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// AbsoluteLifetime ends a session of this frontend this long after login, however busy.
	AbsoluteLifetime time.Duration `yaml:"absolute_lifetime"`
}

// FrontendDefaults is what a frontend inherits from the global session
// section for every field its own `session:` leaves out.
func (c Config) FrontendDefaults() FrontendConfig {
	return FrontendConfig{Cookie: c.Cookie, IdleTimeout: c.IdleTimeout, AbsoluteLifetime: c.AbsoluteLifetime}
}

// Validate reports every bad field at once, each error reading
// "<field>: <problem>" with the field path relative to the frontend's
// session section (cookie.name, idle_timeout, …), as Config.Validate does.
func (f FrontendConfig) Validate() error {
	return errors.Join(append(validateLifetimes(f.IdleTimeout, f.AbsoluteLifetime), f.Cookie.validate()...)...)
}

// applyTo is base with f's fields in place of the global ones: the
// configuration a frontend's view runs on.
func (f FrontendConfig) applyTo(base Config) Config {
	base.Cookie, base.IdleTimeout, base.AbsoluteLifetime = f.Cookie, f.IdleTimeout, f.AbsoluteLifetime
	return base
}

// validateLifetimes checks a pair of session lifetimes, wherever they are configured.
func validateLifetimes(idle, absolute time.Duration) []error {
	var errs []error
	if idle < time.Millisecond {
		errs = append(errs, errors.New("idle_timeout: must be at least 1ms"))
	}
	if absolute < time.Millisecond {
		errs = append(errs, errors.New("absolute_lifetime: must be at least 1ms"))
	} else if idle > absolute {
		errs = append(errs, errors.New("idle_timeout: must not exceed absolute_lifetime"))
	}
	return errs
}

// keyspace is a frontend's part of every store key: "" for the default
// frontend (the keys of the single-frontend release, unchanged) and
// "<name>:" for any other. It starts every logical store key, and a
// record's logical key is its GCM additional data, so a record moved into
// another frontend's keys does not open there.
type keyspace string

// sessionKind starts a session's logical key after the keyspace.
const sessionKind = "s:"

// session is the logical key of the session whose ID hashes to hash.
func (k keyspace) session(hash string) string { return string(k) + sessionKind + hash }

// loginState is the logical key of a pending login.
func (k keyspace) loginState(hash string) string { return string(k) + "l:" + hash }

// clientToken is the logical key of a cached client-credentials token.
func (k keyspace) clientToken(name string) string { return string(k) + "c:" + name }

// derivedTokens is the logical key of the session hash's derived tokens,
// all profiles together (the memory store's entry).
func (k keyspace) derivedTokens(hash string) string { return string(k) + "t:" + hash }

// derivedToken is the logical key of the session hash's derived token of
// profile: its additional data names frontend, session and profile, so a
// sealed token moved to any other of them does not open. Neither a hash
// (base64url) nor a profile contains ':'.
func (k keyspace) derivedToken(hash, profile string) string {
	return string(k) + "t:" + hash + ":" + profile
}

// frontendKeyspace checks a view's name and settings and returns its keyspace.
func frontendKeyspace(name string, fc FrontendConfig) (keyspace, error) {
	if !validFrontendName(name) {
		return "", fmt.Errorf("frontend name %q: must be 1-%d characters of a-z, 0-9 and -", name, maxFrontendName)
	}
	if err := fc.Validate(); err != nil {
		return "", fmt.Errorf("frontend %s: session: %w", name, err)
	}
	if name == DefaultFrontend {
		return "", nil
	}
	return keyspace(name + ":"), nil
}

// validFrontendName reports whether name matches [a-z0-9-]{1,32}: safe in
// a Redis key, a metric label and a log line, and free of ':', which ends
// it inside keys (so no frontend's keys are a prefix of another's).
func validFrontendName(name string) bool {
	if name == "" || len(name) > maxFrontendName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
