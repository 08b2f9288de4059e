// Command peers is `make bench-peers`: envoy-bff and its peers doing the same
// job — a browser session in, the user's access token out to the API — in
// one run, loaded the same way and accounted the same way.
//
// Rows (every loaded request must be the allowed answer; any other is an
// error, and a warm-up answer that is not allowed fails the run):
//
//	envoy-bff Check          ext_authz Check over gRPC, straight to envoy-bff
//	                         (Redis sessions), as `make bench` loads it
//	oauth2-proxy /oauth2/auth  oauth2-proxy's auth endpoint over HTTP (Redis
//	                         sessions), as an HTTP ext_authz or nginx
//	                         auth_request would call it
//	Envoy floor              GET through Envoy on a route without any check,
//	                         once on each Envoy (the repository's config and
//	                         the peers' one): the floor of the rows below
//	Envoy → envoy-bff        GET /api/whoami through the repository's Envoy
//	                         config (gRPC ext_authz)
//	Envoy → oauth2-proxy     GET /api/whoami through Envoy's HTTP ext_authz
//	                         calling oauth2-proxy
//	Envoy oauth2 filter      GET /api/whoami behind Envoy's own oauth2 filter
//	                         (tokens in HMAC-checked cookies; no Redis)
//
// Each row's accounting: CPU per allowed request of the server process, of
// Envoy where Envoy is in the path and of redis-server where the row uses
// Redis (from /proc/<pid>/stat), peak RSS (VmHWM), requests per second,
// p50/p99 latency and errors. Rows are interleaved in each round and the
// table shows each row's median round.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg := config{progress: os.Stderr}
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "load per row per round")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds; the rows are interleaved within each")
	flag.IntVar(&cfg.concurrency, "concurrency", 50, "requests in flight")
	flag.StringVar(&cfg.proxyBin, "oauth2-proxy", defaultProxyBin(), "the oauth2-proxy "+OAuth2ProxyVersion+" binary ($OAUTH2_PROXY_BIN)")
	markdown := flag.String("markdown", "", "also write the table as Markdown to this file (docs/performance.md)")
	readme := flag.String("readme", "", "also rewrite the performance table between the bench-peers markers of this file (README.md)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: peers [flags]\n\nMeasures envoy-bff, oauth2-proxy %s and Envoy's oauth2 filter side by side in one run\n(real Redis, Envoy and a local OpenID provider; real logins), with the same accounting.\nNeeds ENVOY_BIN, ENVOY_BFF_BIN and the oauth2-proxy binary (make bench-peers sets them).\n\nFlags:\n", OAuth2ProxyVersion)
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-peers:", err)
		os.Exit(1)
	}
	rep.text(os.Stdout)
	if *markdown != "" {
		rep.command = "go run ./test/bench/peers " + strings.Join(os.Args[1:], " ")
		if err := writeMarkdown(*markdown, rep); err != nil {
			fmt.Fprintln(os.Stderr, "bench-peers:", err)
			os.Exit(1)
		}
	}
	if *readme != "" {
		if err := writeReadme(*readme, rep); err != nil {
			fmt.Fprintln(os.Stderr, "bench-peers:", err)
			os.Exit(1)
		}
	}
}

// config is one run's shape.
type config struct {
	duration    time.Duration
	rounds      int
	concurrency int
	proxyBin    string
	progress    io.Writer
}

// defaultProxyBin is $OAUTH2_PROXY_BIN, else where the bootstrap puts it.
func defaultProxyBin() string {
	if v := os.Getenv("OAUTH2_PROXY_BIN"); v != "" {
		return v
	}
	return ".tools/bin/oauth2-proxy"
}

// run starts everything, logs in everywhere, loads every row for the
// rounds, and stops everything.
func run(ctx context.Context, cfg config) (*report, error) {
	if cfg.rounds < 1 || cfg.concurrency < 1 || cfg.duration <= 0 {
		return nil, fmt.Errorf("need rounds ≥ 1, concurrency ≥ 1 and a duration")
	}
	dir, err := os.MkdirTemp("", "envoy-bff-bench-peers-")
	if err != nil {
		return nil, fmt.Errorf("make work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(cfg.progress, "==> starting Redis, the local provider, envoy-bff behind Envoy, oauth2-proxy "+OAuth2ProxyVersion+" and the peers' Envoy")
	s, err := startStacks(ctx, dir, cfg.proxyBin)
	if err != nil {
		return nil, err
	}
	defer s.close()
	rows, err := buildRows(ctx, s, cfg.concurrency)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, logTails(s))
	}
	defer closeRows(rows)
	for r := range cfg.rounds {
		for _, row := range rows {
			fmt.Fprintf(cfg.progress, "==> round %d/%d: %s, %d in flight for %s\n", r+1, cfg.rounds, row.name, cfg.concurrency, cfg.duration)
			if err := row.measure(ctx, cfg.concurrency, cfg.duration); err != nil {
				return nil, fmt.Errorf("%s: %w\n%s", row.name, err, logTails(s))
			}
		}
	}
	rep := &report{
		rows: rows, rounds: cfg.rounds, concurrency: cfg.concurrency, duration: cfg.duration,
		date: time.Now().UTC(), nproc: runtime.NumCPU(),
	}
	rep.peakRSS()
	return rep, nil
}

// logTails are the ends of the peers' logs and the stack's, for a failure.
func logTails(s *stacks) string {
	var b strings.Builder
	for _, p := range []interface {
		Tail(int) string
	}{s.proxy, s.envoy} {
		if p != nil {
			b.WriteString(p.Tail(2000))
			b.WriteString("\n")
		}
	}
	b.WriteString(s.bff.Logs(2000))
	return b.String()
}
