// Command envoy-bff is the Backend-for-Frontend that runs beside Envoy: it
// answers Envoy's ext_authz Check for API requests and serves the browser's
// login, callback, user and logout endpoints.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `envoy-bff — a Backend-for-Frontend for single-page apps, at the proxy.

Usage:
  envoy-bff <command> [flags]

Commands:
  serve     run the ext_authz gRPC, browser HTTP and admin listeners
  sessions  list or end a user's sessions through a replica's admin listener
  keys      generate session keys; how to rotate them without a restart
  jwks      print the public key set to register for private_key_jwt
  version   print the version
  help      show this help, or a command's help: envoy-bff help serve

Every command takes --help. Configuration: one YAML file (serve --config)
plus ENVOY_BFF_* environment variables; see docs/configuration.md, the
configuration reference.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// SIGHUP re-reads the session key files; caught from the start, so one
	// sent early never ends the process.
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv, reload)
	stop()
	os.Exit(code)
}

// run dispatches a command line; it returns the process exit code (2 for
// usage errors) so tests can drive it without exiting. reload delivers
// SIGHUP to serve (nil: never).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool), reload <-chan os.Signal) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr, lookup, reload)
		}
		fmt.Fprint(stdout, usage)
		return 0
	case "version":
		return runVersion(args[1:], stdout, stderr)
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr, lookup, reload)
	case "sessions":
		return runSessions(ctx, args[1:], stdout, stderr, lookup)
	case "keys":
		return runKeys(args[1:], stdout, stderr, rand.Reader)
	case "jwks":
		return runJWKS(args[1:], stdout, stderr, lookup)
	default:
		fmt.Fprintf(stderr, "envoy-bff: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// parseFlags parses a command's flags; --help prints the command's usage to
// stdout and ends with code 0.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (done bool, code int) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return true, 0
		}
		return true, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return true, 2
	}
	return false, 0
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: envoy-bff version\n\nPrints envoy-bff's version and the Go version it was built with.\n")
	}
	if done, code := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	fmt.Fprintf(stdout, "envoy-bff %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
