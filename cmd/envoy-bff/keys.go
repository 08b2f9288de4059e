package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"

	"github.com/envoy-bff/envoy-bff/session"
)

const keysUsage = `Usage: envoy-bff keys generate [--id ID] [--format all|keys-file|hash-key-file]

Generates session keys, 32 random bytes each, base64: an encryption key
(session.encryption_keys or the encryption keys file) and a hash key
(session.hash_key or the hash key file). --format all prints them in the
config file's form, the environment's and the key files'; keys-file prints
only the id:secret line of an encryption keys file; hash-key-file only the
hash key. The hash key is set once per deployment: changing it ends every
session, and a running replica refuses a changed hash_key_file.

Rotating the encryption key without a restart. Keep the keys in files
(session.encryption_keys_file: one id:secret per line, the first is the
primary that seals; every key listed opens), e.g. a mounted Kubernetes
Secret. Each replica re-reads them on SIGHUP and within
session.key_files_poll_interval of a change, and logs "session keys
reloaded" with the key IDs it now holds.

  1. Add: envoy-bff keys generate --id k2 --format keys-file prints the new
     line; put it SECOND in the file. Every replica can now open records
     sealed with k2. Wait until each has logged the reload.
  2. Promote: move the k2 line first. New and refreshed sessions are sealed
     with k2; sessions sealed with k1 keep working. (Two steps, because a
     replica sealing with k2 before the others know it would end sessions
     on them.)
  3. Retire: once session.absolute_lifetime has passed since step 2, delete
     the k1 line. Any session still sealed with k1 ends then (401), so not
     sooner.

A file that does not parse, holds a key of the wrong size, gives a known
ID another secret, or changes the hash key is refused with an error log,
and the keys in use stay. Keep the files private (0400 or 0600); a
world-readable one loads with a warning.
With inline keys (the config file or ENVOY_BFF_SESSION_ENCRYPTION_KEYS) the
same three steps each take a rolling restart.

Flags:
`

// Output forms of keys generate.
const (
	formatAll         = "all"
	formatKeysFile    = "keys-file"
	formatHashKeyFile = "hash-key-file"
)

func runKeys(args []string, stdout, stderr io.Writer, random io.Reader) int {
	if len(args) == 0 || args[0] != "generate" {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
			fmt.Fprint(stdout, keysUsage)
			return 0
		}
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	fs := flag.NewFlagSet("keys generate", flag.ContinueOnError)
	id := fs.String("id", "k1", "the new encryption key's ID (letters, digits, _ and -)")
	format := fs.String("format", formatAll, "what to print: all, keys-file (one id:secret line) or hash-key-file (the hash key alone)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), keysUsage)
		fs.PrintDefaults()
	}
	if done, code := parseFlags(fs, args[1:], stdout, stderr); done {
		return code
	}
	if *format != formatAll && *format != formatKeysFile && *format != formatHashKeyFile {
		fmt.Fprintf(stderr, "envoy-bff keys generate: --format must be %s, %s or %s, got %q\n", formatAll, formatKeysFile, formatHashKeyFile, *format)
		return 2
	}
	var b [64]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		fmt.Fprintf(stderr, "envoy-bff keys generate: %v\n", err)
		return 1
	}
	enc, hash := base64.StdEncoding.EncodeToString(b[:32]), base64.StdEncoding.EncodeToString(b[32:])
	// The session package's own rules judge the result, so what this prints always loads.
	if _, err := session.NewKeyRing(session.KeyList{{ID: *id, Secret: enc}}, hash); err != nil {
		fmt.Fprintf(stderr, "envoy-bff keys generate: %v\n", err)
		return 2
	}
	switch *format {
	case formatKeysFile:
		fmt.Fprintf(stdout, "%s:%s\n", *id, enc)
	case formatHashKeyFile:
		fmt.Fprintln(stdout, hash)
	default:
		fmt.Fprintf(stdout, `# config file
session:
  encryption_keys:
    - { id: %[1]s, secret: %[2]s }   # first in the list: the primary
  hash_key: %[3]s

# environment
ENVOY_BFF_SESSION_ENCRYPTION_KEYS=%[1]s:%[2]s
ENVOY_BFF_SESSION_HASH_KEY=%[3]s

# key files (session.encryption_keys_file, session.hash_key_file)
# encryption keys file, one id:secret per line, the primary first:
%[1]s:%[2]s
# hash key file:
%[3]s
`, *id, enc, hash)
	}
	return 0
}
