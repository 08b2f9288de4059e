// Command envoy-bff-demo is `make run`: it starts Envoy on 127.0.0.1:10000 in
// front of envoy-bff, a local OpenID provider that signs a demo user in
// without a form, the sample SPA and the sample API, prints the URL to open,
// and stops everything on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("envoy-bff-demo", flag.ContinueOnError)
	envoyBin := fs.String("envoy", os.Getenv("ENVOY_BIN"), "the Envoy binary (make bootstrap installs one in .tools/bin)")
	bffBin := fs.String("envoy-bff", os.Getenv("ENVOY_BFF_BIN"), "the envoy-bff binary (make build writes bin/envoy-bff)")
	port := fs.Int("port", 10000, "the port Envoy listens on, on 127.0.0.1")
	redisURL := fs.String("redis-url", "", "keep sessions in this Redis (redis://host:port/db) instead of memory")
	dir := fs.String("dir", "", "where to write configs and logs (default: a new temporary folder)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: envoy-bff-demo [flags]

Starts the envoy-bff demo: Envoy on 127.0.0.1:10000 in front of envoy-bff,
a local OpenID provider that signs "Demo User" in without a form, a sample
SPA and a sample API. Ctrl-C stops every process it started.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
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
			fmt.Fprintln(os.Stderr, "envoy-bff-demo:", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	fmt.Fprintln(os.Stderr, "==> starting the local provider, the sample API and SPA, envoy-bff and Envoy")
	s, err := harness.Start(startCtx, harness.Options{
		Dir:            logDir,
		ListenPort:     *port,
		RedisURL:       *redisURL,
		AccessTokenTTL: 5 * time.Minute,
	})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envoy-bff-demo:", err)
		return 1
	}
	backend := "in-memory sessions"
	if *redisURL != "" {
		backend = "sessions in " + *redisURL
	}
	fmt.Printf(`
  envoy-bff demo is running (%s).

    Open  %s  and click "Log in", then "Call API".

  Provider: %s   Logs: %s
  Ctrl-C stops everything.

`, backend, s.URL, s.IssuerURL, filepath.Clean(logDir))

	select {
	case <-ctx.Done():
	case name := <-s.Exited():
		fmt.Fprintf(os.Stderr, "envoy-bff-demo: %s exited; stopping. Log tail:\n%s\n", name, s.Logs(2000))
	}
	fmt.Fprintln(os.Stderr, "==> stopping")
	s.Close()
	return 0
}
