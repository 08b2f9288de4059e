package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestRollingRestart: three replicas behind real Envoy under 20 API
// clients for the whole test; each replica in turn gets SIGTERM, turns
// NOT_SERVING, keeps answering for its drain delay while Envoy's health
// checks move the checks elsewhere, exits cleanly and comes back. Not one
// request fails: every answer is a 200 from the API with the user's token,
// or from /bff/user with the user's claims.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{Replicas: 3, Redis: true, BFFConfig: func(doc map[string]any) {
		doc["listen"] = map[string]any{"drain_delay": "2s"} // twice Envoy's health-check interval
	}})
	users := []*scaleUser{loginUser(t, s), loginUser(t, s), loginUser(t, s)}
	for _, b := range s.BFFs {
		waitEnvoyHealthy(t, s.Envoy, b.GRPCAddr)
	}

	load := startLoad(s.URL, users, 20)
	for i, b := range s.BFFs {
		// The replica is taking its share of the load when it is stopped.
		waitFor(t, 20*time.Second, fmt.Sprintf("replica %d serving checks", i+1), func() bool {
			return metric(t, b, `envoy_bff_checks_total{answer="ok",frontend="default",policy="user"}`) > 0
		})
		b.Stop(20 * time.Second) // SIGTERM, then waits for the exit
		if exited, err := b.Exited(); !exited || err != nil {
			t.Fatalf("replica %d after SIGTERM: exited %v, %v", i+1, exited, err)
		}
		if !strings.Contains(b.Tail(64<<10), "draining: unready, still serving") {
			t.Fatalf("replica %d did not drain:\n%s", i+1, b.Tail(64<<10))
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := b.Restart(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		waitEnvoyHealthy(t, s.Envoy, b.GRPCAddr)
	}
	// The last replica back must take traffic again before the load ends.
	last := s.BFFs[len(s.BFFs)-1]
	waitFor(t, 20*time.Second, "the last restarted replica serving checks", func() bool {
		return metric(t, last, `envoy_bff_checks_total{answer="ok",frontend="default",policy="user"}`) > 0
	})
	r := load.stop()
	t.Logf("%d calls during three restarts, %d ok", r.total, r.ok)
	if r.total == 0 || r.ok != r.total {
		t.Logf("Envoy's counters:\n%s", envoyStats(s.Envoy, "cluster.bff_grpc.", "cluster.bff_http.", "ext_authz"))
		t.Fatalf("%d of %d calls failed during the rolling restart; first: %v", r.total-r.ok, r.total, r.failures)
	}
}

// TestDrain: on SIGTERM a replica first turns unready — /readyz 503
// draining, gRPC health NOT_SERVING — and keeps answering checks, on
// existing connections and new ones, for its drain delay; then it exits
// cleanly.
func TestDrain(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{BFFConfig: func(doc map[string]any) {
		doc["listen"] = map[string]any{"drain_delay": "10s"} // the margin for the checks below
	}})
	u := loginUser(t, s)
	b := s.BFFs[0]
	c := dialAll(t, s)[0]
	if r := mustCheck(t, c, u.cookie); r.Status != 200 {
		t.Fatalf("before SIGTERM: %d", r.Status)
	}
	if err := b.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "/readyz to say draining", func() bool {
		resp, err := http.Get("http://" + b.AdminAddr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 503 && strings.TrimSpace(string(body)) == "draining"
	})
	conn, err := grpc.NewClient(b.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health while draining: %v, %v; want NOT_SERVING", h.GetStatus(), err)
	}
	if r := mustCheck(t, c, u.cookie); r.Status != 200 || r.Bearer == "" {
		t.Fatalf("a check while draining: %d", r.Status)
	}
	fresh, err := harness.DialCheck(b.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if r := mustCheck(t, fresh, u.cookie); r.Status != 200 {
		t.Fatalf("a check on a new connection while draining: %d", r.Status)
	}
	b.Stop(30 * time.Second) // already signalled: waits for the exit
	if exited, err := b.Exited(); !exited || err != nil {
		t.Fatalf("after draining: exited %v, %v", exited, err)
	}
}

// load is API traffic running until stop.
type load struct {
	done      chan struct{}
	wg        sync.WaitGroup
	total, ok atomic.Int64
	mu        sync.Mutex
	failures  []string
}

// startLoad runs clients concurrent SPA-style callers through Envoy, spread
// over the users' sessions, each pausing 10ms between calls, until stop
// (or 200,000 calls each). Every fourth call is /bff/user, the rest the API.
func startLoad(origin string, users []*scaleUser, clients int) *load {
	l := &load{done: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	for i := range clients {
		u := users[i%len(users)]
		l.wg.Go(func() {
			for n := 0; n < 200_000; n++ {
				select {
				case <-l.done:
					return
				default:
				}
				l.total.Add(1)
				call := callAPI
				if n%4 == 3 {
					call = callUser // the browser endpoints restart too
				}
				if msg := call(hc, origin, u.cookie); msg != "" {
					l.mu.Lock()
					if len(l.failures) < 10 {
						l.failures = append(l.failures, fmt.Sprintf("%s: %s", time.Now().Format("15:04:05.000"), msg))
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	go func() { l.wg.Wait(); tr.CloseIdleConnections() }()
	return l
}

// callUser asks /bff/user as the SPA does; "" means a 200 naming the demo user.
func callUser(hc *http.Client, origin, cookie string) string {
	resp, body, err := spaGet(hc, origin, "/bff/user", cookie)
	if err != nil {
		return "/bff/user: " + err.Error()
	}
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"demo-user"`) {
		return fmt.Sprintf("/bff/user: %d %s", resp.StatusCode, body)
	}
	return ""
}

// stop ends the load and returns its counts.
func (l *load) stop() loadResult {
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadResult{total: l.total.Load(), ok: l.ok.Load(), failures: l.failures}
}

// waitEnvoyHealthy waits until Envoy's admin lists the replica's gRPC
// endpoint in bff_grpc as healthy: its health checks see it SERVING.
func waitEnvoyHealthy(t *testing.T, e *harness.Envoy, grpcAddr string) {
	t.Helper()
	prefix := "bff_grpc::" + grpcAddr + "::health_flags::"
	waitFor(t, 20*time.Second, "Envoy to see "+grpcAddr+" healthy", func() bool {
		resp, err := http.Get(e.AdminURL + "/clusters")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			if flags, ok := strings.CutPrefix(line, prefix); ok {
				return flags == "healthy"
			}
		}
		return false
	})
}

// envoyStats is Envoy's non-zero counters that contain any of the filters,
// for a failure's message.
func envoyStats(e *harness.Envoy, filters ...string) string {
	resp, err := http.Get(e.AdminURL + "/stats")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var b strings.Builder
	for _, line := range strings.Split(string(body), "\n") {
		for _, f := range filters {
			if strings.Contains(line, f) && !strings.HasSuffix(line, ": 0") {
				b.WriteString(line + "\n")
				break
			}
		}
	}
	return b.String()
}
