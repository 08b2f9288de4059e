package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// KeyReloader keeps a ring's encryption keys in step with the key files
// (Config.EncryptionKeysFile, Config.HashKeyFile) without a restart: it
// re-reads them when told to (SIGHUP) and when they change, and swaps the
// ring only for a complete, valid set. Anything else is refused with an
// error log and the ring keeps its keys, so a bad edit never ends sessions.
type KeyReloader struct {
	cfg    Config
	ring   *KeyRing
	logger *slog.Logger

	mu sync.Mutex // one reload at a time; guards the fields below
	// last is the content of the files last acted on (applied or refused),
	// so a refused edit is logged once, not at every poll.
	last fileVersion
	// pending is a change seen at one poll; it is applied when the next poll
	// sees it unchanged, so a file caught half-written is not loaded.
	pending *fileVersion
}

// fileVersion is one content of the configured key files.
type fileVersion struct {
	keys, hash fileStamp
}

// NewKeyReloader reads the key files (if any are configured), applies them
// to ring and logs a warning for each file every local user can read. It
// fails, like start-up should, when the files do not hold a valid set.
func NewKeyReloader(cfg Config, ring *KeyRing, logger *slog.Logger) (*KeyReloader, error) {
	r := &KeyReloader{cfg: cfg, ring: ring, logger: logger}
	if !r.hasFiles() {
		return r, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v, m, err := r.read()
	if err == nil {
		err = r.apply(m)
	}
	if err != nil {
		return nil, fmt.Errorf("load session key files: %w", err)
	}
	r.last = v
	r.warn(m)
	logger.Info("session keys loaded from files",
		"encryption_keys_file", cfg.EncryptionKeysFile, "hash_key_file", cfg.HashKeyFile,
		"primary", ring.PrimaryKeyID(), "key_ids", ring.KeyIDs(), "poll_interval", cfg.KeyFilesPollInterval.String())
	return r, nil
}

func (r *KeyReloader) hasFiles() bool {
	return r.cfg.EncryptionKeysFile != "" || r.cfg.HashKeyFile != ""
}

// Run reloads on every value from reload (SIGHUP) and, when the poll
// interval is set, whenever the files change, until ctx ends.
func (r *KeyReloader) Run(ctx context.Context, reload <-chan os.Signal) {
	var tick <-chan time.Time
	if r.hasFiles() && r.cfg.KeyFilesPollInterval > 0 {
		t := time.NewTicker(r.cfg.KeyFilesPollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			_ = r.Reload("signal")
		case <-tick:
			r.poll()
		}
	}
}

// Reload re-reads the key files now and swaps the ring's keys if they hold
// a valid set; otherwise it logs why and the ring is unchanged. cause says
// what asked for it, for the log.
func (r *KeyReloader) Reload(cause string) error {
	if !r.hasFiles() {
		r.logger.Info("session keys: nothing to reload, no key file configured (session.encryption_keys_file, session.hash_key_file)", "cause", cause)
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v, m, err := r.read()
	r.last, r.pending = v, nil
	if err != nil {
		r.refused(err, cause)
		return err
	}
	return r.applyLogged(m, cause)
}

// poll reads the files and applies a new content once two polls in a row
// have seen it. The files are tiny, so they are read every time: mtime
// alone would miss a same-size rewrite within the clock's granularity.
func (r *KeyReloader) poll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, m, err := r.read()
	switch {
	case v.sameContent(r.last):
		r.pending = nil // touched at most
	case r.pending == nil || !v.sameContent(*r.pending):
		r.pending = &v // seen once: let it settle
	case err != nil:
		// A missing, unreadable or bad file: said once, the ring kept.
		r.last, r.pending = v, nil
		r.refused(err, "file change")
	default:
		r.last, r.pending = v, nil
		_ = r.applyLogged(m, "file change")
	}
}

// read reads and parses every configured file. The version identifies what
// was read even when it does not parse (an unreadable file stamps as zero).
func (r *KeyReloader) read() (fileVersion, keyMaterial, error) {
	m, errs := r.cfg.loadKeys()
	v := fileVersion{keys: m.keysStamp, hash: m.hashStamp}
	return v, m, errors.Join(errs...)
}

// apply checks m against the ring and swaps the encryption keys. The hash
// key may not change: every store key derives from it.
func (r *KeyReloader) apply(m keyMaterial) error {
	if r.cfg.HashKeyFile != "" && !r.ring.hasHashKey(m.hashKey) {
		return fmt.Errorf("%s: %w; keep the old one (or restart deliberately, ending every session)", fieldHashFile, ErrHashKeyChanged)
	}
	if r.cfg.EncryptionKeysFile == "" {
		return nil // the inline keys cannot have changed
	}
	for i, k := range m.keys {
		if r.ring.hasHashKey(k.Secret) {
			return fmt.Errorf("%s: line %d: secret must differ from the hash key", fieldKeysFile, m.keyLines[i])
		}
		if r.ring.changedSecret(k.ID, k.Secret) {
			// Records sealed under the ID would stop opening: a new key needs a new ID.
			return fmt.Errorf("%s: line %d: key %q now has another secret, which would end the sessions it sealed; give a new key a new id", fieldKeysFile, m.keyLines[i], k.ID)
		}
	}
	if err := r.ring.Rotate(m.keys); err != nil {
		return fmt.Errorf("%s: %w", fieldKeysFile, err)
	}
	return nil
}

// applyLogged is apply with the outcome logged: which keys came and went.
func (r *KeyReloader) applyLogged(m keyMaterial, cause string) error {
	before := r.ring.KeyIDs()
	if err := r.apply(m); err != nil {
		r.refused(err, cause)
		return err
	}
	r.warn(m)
	after := r.ring.KeyIDs()
	r.logger.Info("session keys reloaded",
		"cause", cause,
		"primary", after[0],
		"previous_primary", before[0],
		"key_ids", after,
		"added", missingFrom(after, before),
		"removed", missingFrom(before, after))
	return nil
}

// refused logs a reload that changed nothing. The error names fields,
// paths and line numbers, never a secret.
func (r *KeyReloader) refused(err error, cause string) {
	r.logger.Error("session keys: reload refused, the previous keys stay in use",
		"cause", cause, "primary", r.ring.PrimaryKeyID(), "error", err)
}

func (r *KeyReloader) warn(m keyMaterial) {
	for _, w := range m.warnings {
		r.logger.Warn("session keys: key file is world-readable", "problem", w)
	}
}

// missingFrom lists the IDs of a that are not in b.
func missingFrom(a, b []string) []string {
	out := []string{}
	for _, id := range a {
		if !slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	return out
}

func (v fileVersion) sameContent(o fileVersion) bool {
	return v.keys.sum == o.keys.sum && v.hash.sum == o.hash.sum
}
