package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"time"

	"github.com/envoy-bff/envoy-bff/session"
)

// reloadConfig is the `reload:` section: how a running replica notices an
// edited config file besides SIGHUP.
type reloadConfig struct {
	// PollInterval is how often the config file is checked for a change
	// (a Kubernetes ConfigMap is updated in place, with no signal); 0 leaves
	// reloading to SIGHUP alone. See [Reload](frontends.md#reload).
	PollInterval time.Duration `yaml:"poll_interval"`
}

func (r reloadConfig) validate() error {
	if r.PollInterval < 0 {
		return fmt.Errorf("poll_interval: must be 0 (SIGHUP only) or positive, got %s", r.PollInterval)
	}
	return nil
}

// configWatcher re-reads the config file on SIGHUP and when it changes,
// and applies its frontends. A config that does not load is refused whole,
// logged, and the running frontends stay as they are (T73).
type configWatcher struct {
	path    string
	lookup  func(string) (string, bool)
	running config // the sections only a restart changes, as started
	apps    *apps
	logger  *slog.Logger

	last    [sha256.Size]byte  // the content last acted on, applied or refused
	pending *[sha256.Size]byte // a change seen once; acted on when seen again unchanged
}

func newConfigWatcher(path string, lookup func(string) (string, bool), running config, a *apps, logger *slog.Logger) *configWatcher {
	w := &configWatcher{path: path, lookup: lookup, running: running, apps: a, logger: logger}
	if raw, err := os.ReadFile(path); err == nil {
		w.last = sha256.Sum256(raw)
	}
	return w
}

// run reloads on every value from signals and, with a poll interval, when
// the file has changed and stayed so for one interval (so a file caught
// half-written is not loaded), until ctx ends.
func (w *configWatcher) run(ctx context.Context, signals <-chan os.Signal) {
	if w.path == "" {
		<-ctx.Done()
		return
	}
	var tick <-chan time.Time
	if d := w.running.Reload.PollInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
			w.reload("signal")
		case <-tick:
			w.poll()
		}
	}
}

// poll reloads once a change has been seen at two polls in a row.
func (w *configWatcher) poll() {
	raw, err := os.ReadFile(w.path)
	if err != nil {
		return // a ConfigMap swap can hide the file for a moment
	}
	sum := sha256.Sum256(raw)
	switch {
	case sum == w.last:
		w.pending = nil
	case w.pending != nil && *w.pending == sum:
		w.pending = nil
		w.reload("file change")
	default:
		w.pending = &sum
	}
}

// reload loads and validates the whole file and applies its frontends.
func (w *configWatcher) reload(cause string) {
	raw, err := os.ReadFile(w.path)
	if err == nil {
		w.last = sha256.Sum256(raw)
	}
	cfg, err := loadConfig(w.path, w.lookup)
	if err != nil {
		w.logger.Error("config reload refused: the running configuration stays", "cause", cause, "error", err)
		return
	}
	if fixed := w.restartOnly(cfg); len(fixed) > 0 {
		// Listeners, the store and keys cannot move under live traffic.
		w.logger.Warn("config reload: these sections changed and apply only after a restart", "sections", fixed)
	}
	added, changed, removed, err := w.apps.apply(cfg)
	if err != nil {
		w.logger.Error("config reload refused: the running configuration stays", "cause", cause, "error", err)
		return
	}
	w.logger.Info("config reloaded", "cause", cause, "added", added, "changed", changed, "removed", removed,
		"frontends", len(w.apps.list()))
}

// storeOnly is c without what frontends inherit from it (cookie and
// lifetimes): a reload applies those to every frontend that takes them.
func storeOnly(c session.Config) session.Config {
	c.Cookie, c.IdleTimeout, c.AbsoluteLifetime = session.CookieConfig{}, 0, 0
	return c
}

// restartOnly names the sections of cfg that differ from the running ones
// and that a reload does not apply.
func (w *configWatcher) restartOnly(cfg config) []string {
	var out []string
	for _, s := range []struct {
		name     string
		old, new any
	}{
		{"listen", w.running.Listen, cfg.Listen},
		{"log", w.running.Log, cfg.Log},
		{"session", storeOnly(w.running.Session), storeOnly(cfg.Session)},
		{"antiforgery", w.running.Antiforgery, cfg.Antiforgery},
		{"tracing", w.running.Tracing, cfg.Tracing},
		{"reload", w.running.Reload, cfg.Reload},
	} {
		if !reflect.DeepEqual(s.old, s.new) {
			out = append(out, s.name)
		}
	}
	return out
}
