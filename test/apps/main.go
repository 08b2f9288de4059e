// Command apps serves the sample API and the sample SPA on two ports, for
// docker-compose.yml and the Kubernetes samples (the tests run both in
// process instead).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/envoy-bff/envoy-bff/test/sampleapi"
	"github.com/envoy-bff/envoy-bff/test/spa"
)

func main() {
	fs := flag.NewFlagSet("apps", flag.ExitOnError)
	apiAddr := fs.String("api", ":8081", "address of the sample API (/api/whoami)")
	spaAddr := fs.String("spa", ":8082", "address of the sample single-page app")
	issuer := fs.String("issuer", "", "the OpenID provider's issuer, whose keys verify the API's bearer tokens (required)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: apps --issuer URL [--api ADDR] [--spa ADDR]\n\nServes the sample API and SPA that envoy-bff's demo deployments put behind Envoy.\n\nFlags:")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if *issuer == "" {
		fs.Usage()
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	api, err := sampleapi.New(sampleapi.Config{Issuer: *issuer})
	if err != nil {
		logger.Error("build the sample API", "error", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	servers := []*http.Server{
		{Addr: *apiAddr, Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second},
		{Addr: *spaAddr, Handler: spa.Handler(), ReadHeaderTimeout: 10 * time.Second},
	}
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ListenAndServe() }()
	}
	logger.Info("apps listening", "api", *apiAddr, "spa", *spaAddr)
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Error("serve", "error", err)
			os.Exit(1)
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
}
