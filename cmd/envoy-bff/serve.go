package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/envoy-bff/envoy-bff/authz"
	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/session"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool), reload <-chan os.Signal) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configPath := fs.String("config", "", "path to the YAML config file (ENVOY_BFF_* variables override it)")
	check := fs.Bool("check", false, "validate the configuration, print the problems, and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: envoy-bff serve --config FILE [--check]

Runs three listeners: the ext_authz gRPC server Envoy calls for every API
request, the browser endpoints (/bff/login, /bff/callback, /bff/user,
/bff/session, /bff/logout) and the admin listener (/healthz, /readyz, /metrics).
SIGINT or SIGTERM stops it gracefully: readiness and gRPC health turn
false, it keeps serving for listen.drain_delay, in-flight checks drain,
then the process exits. SIGHUP re-reads the session key files
(session.encryption_keys_file, session.hash_key_file; see envoy-bff keys)
and the config file: frontends added, changed or removed there apply
without a restart (so does an edit found by polling, reload.poll_interval);
a config that does not validate is refused whole and the running one stays.

Flags:
`)
		fs.PrintDefaults()
	}
	if done, code := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	cfg, err := loadConfig(*configPath, lookup)
	if err != nil {
		fmt.Fprintf(stderr, "envoy-bff: %v\n", err)
		return 1
	}
	if *check {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	logger := newLogger(cfg.Log, stderr)
	if err := serve(ctx, cfg, *configPath, lookup, logger, reload); err != nil {
		logger.Error("envoy-bff stopped", "error", err)
		return 1
	}
	return 0
}

func newLogger(c logConfig, w io.Writer) *slog.Logger {
	lvl, _ := parseLevel(c.Level) // validated already
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// grpcStreamWorkers are long-lived goroutines that serve Checks, so a
// Check runs on a stack already grown to its depth instead of growing a
// new goroutine's stack through the gRPC, Redis and net frames every time:
// under load that copying was a sixth of envoy-bff's CPU. A Check arriving
// while all are busy (each waits on Redis) gets its own goroutine as
// before. A few hundred kilobytes of idle stacks; test/bench/floor uses
// the same number so `make bench` compares the work, not this setting.
const grpcStreamWorkers = 128

// serve wires the packages together and runs until ctx ends. configPath
// and lookup are read again on a reload.
func serve(ctx context.Context, cfg config, configPath string, lookup func(string) (string, bool), logger *slog.Logger, reload <-chan os.Signal) error {
	now := time.Now
	backend, err := session.OpenBackend(cfg.Session, now)
	if err != nil {
		return fmt.Errorf("open session store: %w", err)
	}
	defer backend.Close()

	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	var bg sync.WaitGroup
	if sw, ok := backend.(interface{ Run(context.Context) }); ok {
		bg.Go(func() { sw.Run(runCtx) })
	}
	keys, err := session.NewKeyReloader(cfg.Session, backend.KeyRing(), logger)
	if err != nil {
		return err
	}

	var draining atomic.Bool
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if backend, err = session.Instrument(backend, reg); err != nil { // after Run: the sweeper is the raw store's
		return err
	}
	traces, err := startTracing(ctx, cfg.Tracing)
	if err != nil {
		return err
	}
	defer func() {
		// Flush what is buffered; a collector that is down costs this long at most.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := traces.shutdown(fctx); err != nil {
			logger.Warn("tracing: flush on shutdown failed", "error", err)
		}
	}()

	checkMetrics, err := authz.NewMetrics(reg)
	if err != nil {
		return err
	}
	frontends, err := newApps(runCtx, cfg, backend, logger, reg, traces, checkMetrics)
	if err != nil {
		return err
	}
	defer frontends.stopAll(frontends.list())
	if err := reg.Register(newReadyCollector(frontends.readiness)); err != nil {
		return fmt.Errorf("register readiness metric: %w", err)
	}
	configReload := make(chan os.Signal, 1)
	keyReload := make(chan os.Signal, 1)
	bg.Go(func() { fanOut(runCtx, reload, keyReload, configReload) })
	bg.Go(func() { keys.Run(runCtx, keyReload) })
	watcher := newConfigWatcher(configPath, lookup, cfg, frontends, logger)
	bg.Go(func() { watcher.run(runCtx, configReload) })

	grpcLis, err := net.Listen("tcp", cfg.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen grpc: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	adminLis, err := net.Listen("tcp", cfg.Listen.Admin)
	if err != nil {
		return fmt.Errorf("listen admin: %w", err)
	}

	grpcServer := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.NumStreamWorkers(grpcStreamWorkers),
	)
	authv3.RegisterAuthorizationServer(grpcServer, frontends.checker)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(grpcServer, healthSrv)

	browser := &http.Server{
		Handler:           traces.handler(frontends.router),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	admin := &http.Server{
		Handler:           adminMux(backend, frontends.readiness, &draining, reg, oidcflow.AdminHandler(frontends.sessions, cfg.Listen.AdminToken, logger)),
		ReadHeaderTimeout: 5 * time.Second,
	}

	errc := make(chan error, 3)
	go func() { errc <- serveErr("grpc", grpcServer.Serve(grpcLis)) }()
	go func() { errc <- serveErr("http", browser.Serve(httpLis)) }()
	go func() { errc <- serveErr("admin", admin.Serve(adminLis)) }()
	logger.Info("envoy-bff listening",
		"version", version,
		"grpc", grpcLis.Addr().String(),
		"http", httpLis.Addr().String(),
		"admin", adminLis.Addr().String(),
		"session_backend", cfg.Session.Backend,
		"frontends", len(frontends.list()))

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down: draining in-flight requests", "timeout", cfg.Listen.ShutdownTimeout.String())
	case runErr = <-errc:
	}

	// Readiness turns false first so load balancers stop sending new work,
	// then in-flight checks and browser requests finish.
	draining.Store(true)
	healthSrv.Shutdown()
	if d := cfg.Listen.DrainDelay; d > 0 && runErr == nil {
		// Still serving: Envoy's health checks need a moment to see
		// NOT_SERVING and send new checks elsewhere.
		logger.Info("draining: unready, still serving", "drain_delay", d.String())
		time.Sleep(d)
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Listen.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		done := make(chan struct{})
		go func() { grpcServer.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-shutdownCtx.Done():
			grpcServer.Stop()
		}
	})
	wg.Go(func() { _ = browser.Shutdown(shutdownCtx) })
	wg.Wait()
	_ = admin.Shutdown(shutdownCtx)
	cancelRun()
	bg.Wait()
	logger.Info("envoy-bff stopped")
	return runErr
}

func serveErr(name string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s listener: %w", name, err)
}

// pinger is what readiness needs from the session store.
type pinger interface {
	Ping(ctx context.Context) error
}

func adminMux(store pinger, frontends func() []frontendReady, draining *atomic.Bool, reg *prometheus.Registry, sessions http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(oidcflow.AdminPathSessions, sessions)
	mux.Handle(oidcflow.AdminPathSessions+"/", sessions)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain")
		switch {
		case draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "draining\n")
			return
		case store.Ping(ctx) != nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "session store unreachable\n")
			return
		}
		// One provider being down makes only its own frontends fail their
		// logins and refreshes: the replica stays ready while any frontend
		// is, and lists each, so a load balancer never drops every app
		// because of one.
		var lines strings.Builder
		anyReady := false
		for _, f := range frontends() {
			state := "ready"
			if !f.ready {
				state = "provider discovery pending"
			}
			anyReady = anyReady || f.ready
			fmt.Fprintf(&lines, "frontend %s: %s\n", f.name, state)
		}
		if !anyReady {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "provider discovery pending\n"+lines.String())
			return
		}
		_, _ = io.WriteString(w, "ready\n"+lines.String())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// fanOut copies every signal from in to each of outs, dropping one that an
// out has no room for (a reload already pending covers it).
func fanOut(ctx context.Context, in <-chan os.Signal, outs ...chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig, ok := <-in:
			if !ok {
				return
			}
			for _, out := range outs {
				select {
				case out <- sig:
				default:
				}
			}
		}
	}
}
