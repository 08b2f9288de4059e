package session

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// logBuffer is a log sink safe for the reloader's goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

// reloadFixture is a memory store whose ring follows key files in a temp dir.
type reloadFixture struct {
	dir      string
	cfg      Config
	store    *MemoryStore
	reloader *KeyReloader
	log      *logBuffer
}

func newReloadFixture(t *testing.T, keys string) *reloadFixture {
	t.Helper()
	f := &reloadFixture{dir: t.TempDir(), log: &logBuffer{}}
	f.cfg = DefaultConfig()
	f.cfg.EncryptionKeysFile = writeKeyFile(t, f.dir, "keys", keys, 0o600)
	f.cfg.HashKeyFile = writeKeyFile(t, f.dir, "hash", testHashKey+"\n", 0o600)
	b, err := OpenBackend(f.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	f.store = b.(*MemoryStore)
	logger := slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if f.reloader, err = NewKeyReloader(f.cfg, f.store.KeyRing(), logger); err != nil {
		t.Fatal(err)
	}
	return f
}

// replace swaps a key file's content the way Kubernetes and editors do: a
// new file renamed over the old one.
func (f *reloadFixture) replace(t *testing.T, name, content string) {
	t.Helper()
	tmp := writeKeyFile(t, f.dir, "."+name+".tmp", content, 0o600)
	if err := os.Rename(tmp, filepath.Join(f.dir, name)); err != nil {
		t.Fatal(err)
	}
}

// login stores a new session and returns its ID.
func (f *reloadFixture) login(t *testing.T, sub string) ID {
	t.Helper()
	id, err := NewID(strings.NewReader(strings.Repeat(sub, IDLen)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Create(t.Context(), id, &sessionpb.Session{Subject: sub, Issuer: "https://idp"}); err != nil {
		t.Fatal(err)
	}
	return id
}

// sealedBy names the key that sealed id's stored record.
func (f *reloadFixture) sealedBy(t *testing.T, id ID) string {
	t.Helper()
	f.store.mem.mu.Lock()
	defer f.store.mem.mu.Unlock()
	e, ok := f.store.mem.entries[f.store.ks.session(f.store.ring.HashID(id))]
	if !ok {
		t.Fatal("no stored record")
	}
	keyID, ok := sealedKeyID(e.sealed)
	if !ok {
		t.Fatal("stored record has no valid header")
	}
	return keyID
}

func (f *reloadFixture) get(t *testing.T, id ID) error {
	t.Helper()
	_, err := f.store.Get(t.Context(), id)
	return err
}

const (
	fileA  = "a:" + testSecret1 + "\n"
	fileBA = "# b is the new primary\nb:" + testSecret2 + "\na:" + testSecret1 + "\n"
	fileB  = "b:" + testSecret2 + "\n"
)

// TestKeyReloaderRotation walks the rotation a user performs: add a new
// primary, old sessions keep working and new ones seal with it; remove the
// old key, and exactly the sessions it sealed end (as not found).
func TestKeyReloaderRotation(t *testing.T) {
	t.Parallel()
	f := newReloadFixture(t, fileA)
	old := f.login(t, "o")
	if got := f.sealedBy(t, old); got != "a" {
		t.Fatalf("sealed by %q, want a", got)
	}

	f.replace(t, "keys", fileBA)
	if err := f.reloader.Reload("test"); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := f.get(t, old); err != nil {
		t.Fatalf("a session sealed by the old primary after adding a new one: %v", err)
	}
	fresh := f.login(t, "n")
	if got := f.sealedBy(t, fresh); got != "b" {
		t.Fatalf("new session sealed by %q, want the new primary b", got)
	}
	if log := f.log.String(); !strings.Contains(log, `msg="session keys reloaded"`) || !strings.Contains(log, "primary=b previous_primary=a") || !strings.Contains(log, "added=[b] removed=[]") {
		t.Errorf("reload log lacks what changed:\n%s", log)
	}

	f.replace(t, "keys", fileB)
	if err := f.reloader.Reload("test"); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	err := f.get(t, old)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrUnreadable) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("session sealed by the removed key: %v, want ErrNotFound (unreadable), never unavailable", err)
	}
	if err := f.get(t, fresh); err != nil {
		t.Fatalf("session sealed by the remaining key: %v", err)
	}
	if !strings.Contains(f.log.String(), "added=[] removed=[a]") {
		t.Errorf("reload log does not say a was removed:\n%s", f.log.String())
	}
	noSecretIn(t, f.log.String())
}

// TestKeyReloaderRefuses: a reload that would not give a complete, valid
// ring, or that changes the hash key, is refused; the ring keeps its keys
// and sessions keep working.
func TestKeyReloaderRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string // which file to replace; "" removes the keys file
		content string
		want    string
	}{
		{name: "unparsable", file: "keys", content: "b " + testSecret2 + "\n", want: "encryption_keys_file: line 1: want id:secret"},
		{name: "wrong_key_size", file: "keys", content: "b:" + shortSecret + "\na:" + testSecret1 + "\n", want: "encryption_keys_file: line 1: secret must be 32 bytes"},
		{name: "empty", file: "keys", content: "# emptied by mistake\n", want: "encryption_keys_file: holds no key"},
		{name: "duplicate_id", file: "keys", content: "a:" + testSecret2 + "\na:" + testSecret1 + "\n", want: `line 2: id "a" is already on line 1`},
		{name: "key_equals_hash_key", file: "keys", content: "b:" + testHashKey + "\na:" + testSecret1 + "\n", want: "encryption_keys_file: line 1: secret must differ from the hash key"},
		{name: "removed", file: "", want: "encryption_keys_file: open "},
		{name: "id_with_another_secret", file: "keys", content: "b:" + testSecret2 + "\na:" + testSecret3 + "\n", want: `encryption_keys_file: line 2: key "a" now has another secret`},
		{name: "hash_key_changed", file: "hash", content: testSecret3 + "\n", want: "hash_key_file: the hash key changed, which would end every session"},
		{name: "hash_key_unparsable", file: "hash", content: "h:" + testHashKey + "\n", want: "hash_key_file: must hold 32 bytes of base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newReloadFixture(t, fileA)
			id := f.login(t, "s")
			if tc.file == "" {
				if err := os.Remove(f.cfg.EncryptionKeysFile); err != nil {
					t.Fatal(err)
				}
			} else {
				f.replace(t, tc.file, tc.content)
			}
			err := f.reloader.Reload("test")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload = %v, want an error containing %q", err, tc.want)
			}
			if got := f.store.KeyRing().KeyIDs(); !slices.Equal(got, []string{"a"}) {
				t.Errorf("ring after a refused reload = %v, want [a]", got)
			}
			if err := f.get(t, id); err != nil {
				t.Errorf("session after a refused reload: %v", err)
			}
			if got := f.sealedBy(t, f.login(t, "t")); got != "a" {
				t.Errorf("new session sealed by %q after a refused reload, want a", got)
			}
			log := f.log.String()
			if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "reload refused, the previous keys stay in use") || !strings.Contains(log, strings.ReplaceAll(tc.want, `"`, `\"`)) {
				t.Errorf("refusal not logged as an error with its reason:\n%s", log)
			}
			noSecretIn(t, log)
		})
	}
}

// TestKeyReloaderPoll: a changed file is applied on the poll after the one
// that first sees it (so a half-written file is never loaded), a bad edit is
// logged once however many polls see it, and touching a file changes nothing.
func TestKeyReloaderPoll(t *testing.T) {
	t.Parallel()
	f := newReloadFixture(t, fileA)
	ring := f.store.KeyRing()

	f.replace(t, "keys", fileBA)
	f.reloader.poll()
	if got := ring.PrimaryKeyID(); got != "a" {
		t.Fatalf("applied on first sight: primary %q", got)
	}
	f.reloader.poll()
	if got := ring.KeyIDs(); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("after two polls the ring is %v, want [b a]", got)
	}
	if n := f.log.count("cause=\"file change\""); n != 1 {
		t.Errorf("%d reload log lines, want 1:\n%s", n, f.log.String())
	}

	// Seen mid-edit: a content that changes again before the next poll is
	// not applied; the final one is.
	f.replace(t, "keys", "b:"+testSecret2+"\n")
	f.reloader.poll()
	f.replace(t, "keys", fileBA+"c:"+testSecret3+"\n")
	f.reloader.poll()
	if got := ring.KeyIDs(); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("a content seen once was applied: %v", got)
	}
	f.reloader.poll()
	if got := ring.KeyIDs(); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Fatalf("the settled content was not applied: %v", got)
	}

	f.replace(t, "keys", "b:"+shortSecret+"\n")
	for range 5 {
		f.reloader.poll()
	}
	if n := f.log.count("reload refused"); n != 1 {
		t.Errorf("a bad edit seen by 5 polls logged %d times, want once:\n%s", n, f.log.String())
	}
	if got := ring.KeyIDs(); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Errorf("a bad edit changed the ring: %v", got)
	}

	f.replace(t, "keys", fileB)
	f.reloader.poll()
	f.reloader.poll()
	now := time.Now().Add(time.Minute)
	if err := os.Chtimes(f.cfg.EncryptionKeysFile, now, now); err != nil {
		t.Fatal(err)
	}
	before := f.log.count("session keys reloaded")
	f.reloader.poll()
	f.reloader.poll()
	if got := ring.KeyIDs(); !slices.Equal(got, []string{"b"}) || f.log.count("session keys reloaded") != before {
		t.Errorf("touching the file: ring %v, reloads %d → %d", got, before, f.log.count("session keys reloaded"))
	}
}

// TestKeyReloaderRun: Run reloads on a signal, and on a file change at its
// poll interval, until its context ends.
func TestKeyReloaderRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		poll time.Duration
		send bool
	}{
		{name: "signal_only", poll: 0, send: true},
		{name: "file_watch", poll: minKeyFilesPoll, send: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newReloadFixture(t, fileA)
			f.reloader.cfg.KeyFilesPollInterval = tc.poll
			reload := make(chan os.Signal, 1)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { f.reloader.Run(ctx, reload); close(done) }()
			t.Cleanup(func() { cancel(); <-done })

			f.replace(t, "keys", fileBA)
			if tc.send {
				reload <- os.Interrupt // any value: Run does not look at which signal
			}
			ring := f.store.KeyRing()
			deadline := time.Now().Add(10 * time.Second)
			for ring.PrimaryKeyID() != "b" && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := ring.PrimaryKeyID(); got != "b" {
				t.Fatalf("primary %q after the change, want b; log:\n%s", got, f.log.String())
			}
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return when its context ended")
			}
		})
	}
}

// TestKeyReloaderWithoutFiles: with inline keys there is nothing to reload;
// a signal is answered with a log line, not an exit or a change.
func TestKeyReloaderWithoutFiles(t *testing.T) {
	t.Parallel()
	var log logBuffer
	ring := testRing(t)
	r, err := NewKeyReloader(DefaultConfig(), ring, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reload("signal"); err != nil || !strings.Contains(log.String(), "nothing to reload") {
		t.Fatalf("Reload = %v; log %s", err, log.String())
	}
	if got := ring.KeyIDs(); !slices.Equal(got, []string{"k1"}) {
		t.Errorf("ring = %v", got)
	}
}

// TestKeyFilePermissions: a key file every local user can read loads, with
// one warning naming the field; a private one loads silently.
func TestKeyFilePermissions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		perm  os.FileMode
		warns []string
	}{
		{name: "private", perm: 0o600},
		{name: "group_readable", perm: 0o640},
		{name: "world_readable", perm: 0o644, warns: []string{"encryption_keys_file:", "hash_key_file:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := DefaultConfig()
			cfg.EncryptionKeysFile = writeKeyFile(t, dir, "keys", fileA, tc.perm)
			cfg.HashKeyFile = writeKeyFile(t, dir, "hash", testHashKey, tc.perm)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			var log logBuffer
			b, err := OpenBackend(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if _, err := NewKeyReloader(cfg, b.KeyRing(), slog.New(slog.NewTextHandler(&log, nil))); err != nil {
				t.Fatal(err)
			}
			if n := log.count("level=WARN"); n != len(tc.warns) {
				t.Errorf("%d warnings, want %d:\n%s", n, len(tc.warns), log.String())
			}
			for _, w := range tc.warns {
				if !strings.Contains(log.String(), w) || !strings.Contains(log.String(), "mode 0644") {
					t.Errorf("warning lacks %q and the mode:\n%s", w, log.String())
				}
			}
			noSecretIn(t, log.String())
		})
	}
}

// TestRotateConcurrent: sealing and opening while the keys swap never sees
// a half-built ring (run with -race); every record opens afterwards because
// each rotation keeps the previous keys.
func TestRotateConcurrent(t *testing.T) {
	t.Parallel()
	ring := testRing(t, Key{ID: "a", Secret: testSecret1})
	rings := []KeyList{
		{{ID: "b", Secret: testSecret2}, {ID: "a", Secret: testSecret1}},
		{{ID: "a", Secret: testSecret1}, {ID: "b", Secret: testSecret2}},
	}
	stop, started, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			err := ring.Rotate(rings[n%2])
			if n == 0 {
				close(started) // the workers start once the ring is rotating
			}
			if err != nil {
				t.Error(err)
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	<-started
	var workers sync.WaitGroup
	for w := range 4 {
		workers.Go(func() {
			for i := range 500 {
				key := "s:" + string(rune('a'+w)) + string(rune('a'+i%26))
				sealed, err := ring.seal(key, uint64(i), []byte("record"))
				if err != nil {
					t.Error(err)
					return
				}
				if _, plain, err := ring.open(key, sealed); err != nil || string(plain) != "record" {
					t.Errorf("open during rotation: %v", err)
					return
				}
			}
		})
	}
	workers.Wait()
	close(stop)
	<-done
}
