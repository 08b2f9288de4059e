// Command envoy-bff-demo is `make run`: it starts Envoy on port 10000 in
// front of envoy-bff, which serves two apps ("shop" on localhost, "admin" on
// 127.0.0.1: two hosts to a browser, no DNS needed), each a client of a
// local OpenID provider that signs a demo user in without a form; the
// sample SPA and the sample API behind both. It prints the URLs to open and
// stops everything on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// frontends are the demo's two apps: one envoy-bff, two frontends, each
// its own client at the provider, its own cookie and its own sessions.
var frontends = []harness.Frontend{
	{Name: "shop", Host: "localhost"},
	{Name: "admin", Host: "127.0.0.1"},
}

// options is the stack `make run` starts.
func options(dir string, port int, redisURL string) harness.Options {
	return harness.Options{
		Dir:            dir,
		ListenPort:     port,
		RedisURL:       redisURL,
		AccessTokenTTL: 5 * time.Minute,
		Frontends:      frontends,
		SilentLogin:    true,
	}
}

const usage = `Usage: envoy-bff-demo [flags]

Starts the envoy-bff demo: Envoy on port 10000 in front of one envoy-bff
serving two apps, "shop" at http://localhost:10000 and "admin" at
http://127.0.0.1:10000, each a client of a local OpenID provider that signs
"Demo User" in without a form and remembers the browser (so a silent login
works after a first login); a sample SPA and a sample API behind both.
Ctrl-C stops every process it started.

Flags:
`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("envoy-bff-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envoyBin := fs.String("envoy", os.Getenv("ENVOY_BIN"), "the Envoy binary (make bootstrap installs one in .tools/bin)")
	bffBin := fs.String("envoy-bff", os.Getenv("ENVOY_BFF_BIN"), "the envoy-bff binary (make build writes bin/envoy-bff)")
	port := fs.Int("port", 10000, "the port Envoy listens on, on 127.0.0.1")
	redisURL := fs.String("redis-url", "", "keep sessions in this Redis (redis://host:port/db) instead of memory")
	dir := fs.String("dir", "", "where to write configs and logs (default: a new temporary folder)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *envoyBin != "" {
		os.Setenv("ENVOY_BIN", *envoyBin)
	}
	if *bffBin != "" {
		os.Setenv("ENVOY_BFF_BIN", *bffBin)
	}
	logDir := *dir
	if logDir == "" {
		var err error
		logDir, err = os.MkdirTemp("", "envoy-bff-demo-")
		if err != nil {
			fmt.Fprintln(stderr, "envoy-bff-demo:", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	fmt.Fprintln(stderr, "==> starting the local provider, the sample API and SPA, envoy-bff and Envoy")
	s, err := harness.Start(startCtx, options(logDir, *port, *redisURL))
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "envoy-bff-demo:", err)
		return 1
	}
	fmt.Fprint(stdout, banner(s, *redisURL, filepath.Clean(logDir)))

	select {
	case <-ctx.Done():
	case name := <-s.Exited():
		fmt.Fprintf(stderr, "envoy-bff-demo: %s exited; stopping. Log tail:\n%s\n", name, s.Logs(2000))
	}
	fmt.Fprintln(stderr, "==> stopping")
	s.Close()
	return 0
}

// banner is what the demo prints once everything is up: where each app is
// and what to try.
func banner(s *harness.Stack, redisURL, logDir string) string {
	backend := "in-memory sessions"
	if redisURL != "" {
		backend = "sessions in " + redisURL
	}
	apps := ""
	for _, f := range s.Frontends {
		apps += fmt.Sprintf("    %-6s %s\n", f.Name, f.URL(s))
	}
	return fmt.Sprintf(`
  envoy-bff demo is running (%s): one envoy-bff, two apps.

%s
  Open shop: it first tries a silent login; the provider has no session for
  this browser yet, so the page offers Log in. Log in to shop (this provider
  signs the demo user in without a form), then open admin: it signs in
  silently (single sign-on at the provider), with a session of its own.
  Signed in, a page counts down to its session's end, warns in the last two
  minutes, and shows a live feed (Server-Sent Events) from the API.
  Log out of either: the provider's session ends, and its back-channel
  logout ends the other app's session too.

  Provider: %s   Logs: %s
  Ctrl-C stops everything.

`, backend, apps, s.IssuerURL, logDir)
}
