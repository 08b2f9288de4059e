package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// keyFiles are the key files one replica reads, in a directory of their own
// as a mounted Kubernetes Secret would be.
type keyFiles struct {
	dir, keys, hash string
	keyA, hashKey   string // the stack's key (id k1) and hash key
}

// write replaces a key file the way Kubernetes and editors do: a new file
// renamed over the old one.
func (k keyFiles) write(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// useKeyFiles moves a replica's config from inline keys to key files
// holding the same keys.
func useKeyFiles(t *testing.T, doc map[string]any, k *keyFiles, poll string) {
	sess := doc["session"].(map[string]any)
	k.keyA = sess["encryption_keys"].([]map[string]any)[0]["secret"].(string)
	k.hashKey = sess["hash_key"].(string)
	k.write(t, k.keys, "# envoy-bff session keys, primary first\nk1:"+k.keyA+"\n")
	k.write(t, k.hash, k.hashKey+"\n")
	delete(sess, "encryption_keys")
	delete(sess, "hash_key")
	sess["encryption_keys_file"] = k.keys
	sess["hash_key_file"] = k.hash
	sess["key_files_poll_interval"] = poll
}

// TestKeyRotation rotates the encryption key of a running replica (Redis
// backend, so sessions outlive nothing but their keys) through its key file,
// once told by SIGHUP and once by the file watch alone: a new primary keeps
// old sessions and seals new ones; a bad file or a changed hash key is
// refused and changes nothing; removing the old key ends exactly the
// sessions it sealed, like an unknown session (T3: 401 + clearing cookie).
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		poll string // key_files_poll_interval; 0s: SIGHUP only
		hup  bool
	}{
		{name: "T3_sighup", poll: "0s", hup: true},
		{name: "T3_file_watch", poll: "200ms", hup: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &keyFiles{dir: t.TempDir()}
			k.keys, k.hash = filepath.Join(k.dir, "encryption_keys"), filepath.Join(k.dir, "hash_key")
			s := startStack(t, harness.Options{Redis: true, BFFConfig: func(doc map[string]any) { useKeyFiles(t, doc, k, tc.poll) }})
			bff := s.BFFs[0]
			keyB, otherHash, err := harness.NewKeys()
			if err != nil {
				t.Fatal(err)
			}
			// logged counts the replica's log lines holding every one of subs.
			logged := func(subs ...string) int {
				n := 0
				for _, line := range strings.Split(bff.Tail(1<<20), "\n") {
					all := true
					for _, sub := range subs {
						all = all && strings.Contains(line, sub)
					}
					if all {
						n++
					}
				}
				return n
			}
			// reload replaces a key file and waits until the replica has
			// logged the outcome: a line holding every one of want, one more
			// than before.
			reload := func(path, content string, want ...string) {
				t.Helper()
				before := logged(want...)
				k.write(t, path, content)
				if tc.hup {
					if err := bff.Signal(syscall.SIGHUP); err != nil {
						t.Fatal(err)
					}
				}
				deadline := time.Now().Add(15 * time.Second)
				for logged(want...) <= before && time.Now().Before(deadline) {
					if exited, err := bff.Exited(); exited {
						t.Fatalf("the replica ended (%v):\n%s", err, bff.Tail(4000))
					}
					time.Sleep(50 * time.Millisecond)
				}
				if logged(want...) <= before {
					t.Fatalf("the replica did not log %q:\n%s", want, bff.Tail(4000))
				}
			}
			const (
				reloaded = `"msg":"session keys reloaded"`
				refused  = `"msg":"session keys: reload refused, the previous keys stay in use"`
			)
			keyID := func(b *browser) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				id, err := s.SessionKeyID(ctx, b.cookies["__Host-bff"])
				if err != nil {
					t.Fatalf("read the stored session's key id: %v", err)
				}
				return id
			}
			works := func(who string, b *browser) {
				t.Helper()
				if r := b.api("/api/whoami"); r.Status != 200 {
					t.Fatalf("%s: API %d %s", who, r.Status, r.Body)
				}
			}
			login := func(who string) *browser {
				t.Helper()
				b := newBrowser(t, s.URL)
				if final, hops := b.login("/"); final.Status != 200 {
					t.Fatalf("%s: login ended at %v with %d", who, hops, final.Status)
				}
				works(who, b)
				return b
			}

			a := login("session A")
			if got := keyID(a); got != "k1" {
				t.Fatalf("session A sealed by %q, want k1", got)
			}

			// 1. B becomes the primary, A stays to open old sessions.
			twoKeys := "# rotated: k2 is the primary\nk2:" + keyB + "\nk1:" + k.keyA + "\n"
			reload(k.keys, twoKeys, reloaded, `"primary":"k2"`, `"added":["k2"]`)
			works("session A after adding k2", a)
			if got := keyID(a); got != "k1" {
				t.Fatalf("session A now sealed by %q; it must still need k1 for the last step to mean anything", got)
			}
			b := login("session B")
			if got := keyID(b); got != "k2" {
				t.Fatalf("a login after the reload sealed by %q, want the new primary k2", got)
			}

			// 2. A bad keys file, then a changed hash key, are refused with
			// an error; both sessions keep working.
			reload(k.keys, "k3:c2hvcnQta2V5\n"+twoKeys, refused, `"level":"ERROR"`, `encryption_keys_file: line 1: secret must be 32 bytes of base64`)
			reload(k.keys, twoKeys, reloaded, `"primary":"k2"`, `"added":[]`, `"removed":[]`)
			reload(k.hash, otherHash+"\n", refused, `"level":"ERROR"`, `hash_key_file: the hash key changed, which would end every session`)
			works("session A after refused reloads", a)
			works("session B after refused reloads", b)
			if got := keyID(b); got != "k2" {
				t.Fatalf("session B sealed by %q after refused reloads, want k2", got)
			}
			k.write(t, k.hash, k.hashKey+"\n")

			// 3. A is removed: only the session it sealed ends.
			reload(k.keys, "k2:"+keyB+"\n", reloaded, `"removed":["k1"]`)
			r := a.api("/api/whoami")
			if r.Status != 401 || r.json(t)["error"] != "unauthenticated" {
				t.Fatalf("session sealed by the removed key: %d %s, want 401 unauthenticated (never 503)", r.Status, r.Body)
			}
			if sc := strings.Join(r.Header.Values("Set-Cookie"), "\n"); !strings.Contains(sc, "__Host-bff=") || !strings.Contains(sc, "Max-Age=0") {
				t.Fatalf("no clearing Set-Cookie for the ended session: %q", redact(sc))
			}
			works("session B after removing k1", b)
			if got := keyID(b); got != "k2" {
				t.Errorf("session B sealed by %q, want k2", got)
			}

			log := bff.Tail(1 << 20)
			for _, secret := range []string{k.keyA, keyB, k.hashKey, otherHash, "c2hvcnQta2V5"} {
				if strings.Contains(log, secret) {
					t.Fatal("a key appears in the replica's log")
				}
			}
		})
	}
}

// TestSIGHUPWithInlineKeys: SIGHUP never stops a replica, even one with no
// key files to reload; it says so in its log and keeps serving.
func TestSIGHUPWithInlineKeys(t *testing.T) {
	t.Parallel()
	encKey, hashKey, err := harness.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// No provider is needed: the replica is alive (healthz) before discovery.
	doc := harness.BFFConfigDoc("http://127.0.0.1:9/idp", "http://127.0.0.1:9", "", encKey, hashKey)
	b, err := harness.StartBFF(ctx, harness.BFFOptions{Dir: t.TempDir(), Config: doc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(10 * time.Second) })
	for i := 1; i <= 2; i++ {
		if err := b.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(b.Tail(1<<20), "nothing to reload") < i && time.Now().Before(deadline) {
			if exited, err := b.Exited(); exited {
				t.Fatalf("SIGHUP ended the replica (%v):\n%s", err, b.Tail(4000))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if strings.Count(b.Tail(1<<20), "nothing to reload") < i {
			t.Fatalf("SIGHUP %d not answered in the log:\n%s", i, b.Tail(4000))
		}
	}
	if err := harness.WaitHTTP(ctx, b.Process, "http://"+b.AdminAddr+"/healthz", 200); err != nil {
		t.Fatalf("after SIGHUP: %v", err)
	}
}
