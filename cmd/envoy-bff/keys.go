package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"

	"github.com/envoy-bff/envoy-bff/session"
)

const keysUsage = `Usage: envoy-bff keys generate [--id ID]

Prints a new encryption key for session.encryption_keys and a new
session.hash_key, 32 random bytes each, base64, in the config file's form
and in the environment's. Put a new encryption key first in the list to make
it the primary (records it sealed before stay readable while the old key is
listed); the hash key is set once per deployment: changing it ends every
session.

Flags:
`

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
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), keysUsage)
		fs.PrintDefaults()
	}
	if done, code := parseFlags(fs, args[1:], stdout, stderr); done {
		return code
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
	fmt.Fprintf(stdout, `# config file
session:
  encryption_keys:
    - { id: %s, secret: %s }   # first in the list: the primary
  hash_key: %s

# environment
ENVOY_BFF_SESSION_ENCRYPTION_KEYS=%s:%s
ENVOY_BFF_SESSION_HASH_KEY=%s
`, *id, enc, hash, *id, enc, hash)
	return 0
}
