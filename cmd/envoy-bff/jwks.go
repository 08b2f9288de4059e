package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/envoy-bff/envoy-bff/oidcflow"
)

const jwksUsage = `Usage: envoy-bff jwks --config FILE [--frontend NAME]

Prints, as JSON, the public key set (JWKS) to register at the provider for
a frontend that authenticates with private_key_jwt: the public half of
oidc.client_key_file, with its kid (oidc.client_key_id, default the key's
RFC 7638 thumbprint) and alg (oidc.client_key_alg). Nothing private is
printed. The config is loaded and checked as serve would.

Rotating the client key without a restart: register the new key's JWKS
beside the old one at the provider (print it from a copy of the config
pointing at the new file), then replace the key file. Every replica reads
the file again within seconds of the change on its next provider call (a
file that does not load is logged and the old key kept). Once every replica
signs with the new key, remove the old one at the provider.

Flags:
`

func runJWKS(args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	fs := flag.NewFlagSet("jwks", flag.ContinueOnError)
	path := fs.String("config", "", "the YAML config file (required)")
	name := fs.String("frontend", "", "the frontend whose key to print (default: the only one, or default)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), jwksUsage)
		fs.PrintDefaults()
	}
	if done, code := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *path == "" {
		fmt.Fprint(stderr, "envoy-bff jwks: --config is required\n")
		return 2
	}
	cfg, err := loadConfig(*path, lookup)
	if err != nil {
		fmt.Fprintf(stderr, "envoy-bff jwks: %v\n", err)
		return 1
	}
	list := cfg.frontendList()
	var names []string
	for _, f := range list {
		names = append(names, f.Name)
	}
	var oidc *oidcflow.Config
	for i, f := range list {
		if f.Name == *name || (*name == "" && len(list) == 1) {
			oidc = &list[i].OIDC
		}
	}
	if oidc == nil {
		fmt.Fprintf(stderr, "envoy-bff jwks: name one of the frontends with --frontend: %s\n", strings.Join(names, ", "))
		return 2
	}
	set, err := oidcflow.ClientJWKS(*oidc)
	if err != nil {
		fmt.Fprintf(stderr, "envoy-bff jwks: oidc.%v\n", err)
		return 1
	}
	out, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "envoy-bff jwks: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", out)
	return 0
}
