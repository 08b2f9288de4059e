package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// Crash settings: the outside probe's shape (issue 12) — 200 clients on 100
// sessions over three replicas — with the load kept going well past the two
// seconds after the kill in which the probe saw its 503s.
const (
	crashSessions = 100
	crashClients  = 200
	crashBefore   = 2 * time.Second // load on all three before the kill
	crashAfter    = 4 * time.Second // load on the survivors after it
)

// TestScaleOutReplicaKilled_T80: a replica SIGKILLed under load costs no
// request. Checks in flight on the dead replica's connections, and new ones
// Envoy sends it before its health checks or outlier detection notice, are
// retried on another replica (Check is idempotent), as are the /bff/ GETs.
// Access tokens live the default 5 minutes, so no refresh is in flight: a
// crash mid-refresh is T64 in TestScaleOut. The graceful case — SIGTERM,
// drain, restart of each replica in turn — is TestRollingRestart.
func TestScaleOutReplicaKilled_T80(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{Replicas: 3, Redis: true})
	users := loginUsers(t, s, crashSessions)
	for _, b := range s.BFFs {
		waitEnvoyHealthy(t, s.Envoy, b.GRPCAddr)
	}

	load := startLoad(s.URL, users, crashClients)
	victim := s.BFFs[1]
	// The victim is taking its share of the load when it dies.
	waitFor(t, 20*time.Second, "the victim serving checks", func() bool {
		return metric(t, victim, `envoy_bff_checks_total{answer="ok",frontend="default",policy="user"}`) > 0
	})
	time.Sleep(crashBefore)
	atKill := load.total.Load()
	victim.Kill()
	time.Sleep(crashAfter)
	r := load.stop()

	t.Logf("T80: %d requests (%d after the kill), %d non-200", r.total, r.total-atKill, r.total-r.ok)
	t.Logf("Envoy's counters:\n%s", envoyStats(s.Envoy, "cluster.bff_grpc.", "cluster.bff_http.", "ext_authz"))
	if r.total-atKill < 1000 {
		t.Errorf("only %d requests after the kill: the load did not run", r.total-atKill)
	}
	if r.ok != r.total {
		t.Fatalf("%d of %d requests failed after one replica was killed; first:\n%s", r.total-r.ok, r.total, strings.Join(r.failures, "\n"))
	}
}

// loginUsers logs n users in through Envoy.
func loginUsers(t *testing.T, s *harness.Stack, n int) []*scaleUser {
	t.Helper()
	users := make([]*scaleUser, n)
	for i := range users {
		users[i] = loginUser(t, s)
	}
	return users
}
