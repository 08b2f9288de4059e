package authz

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(_ *Config, d *Deps) { d.Metrics = m })
	e.check(t, api(nil)(e))                                    // ok
	e.check(t, api(nil)(e))                                    // ok
	e.check(t, api(map[string]string{csrfHeader: ""})(e))      // 403
	e.check(t, api(map[string]string{"cookie": ""})(e))        // 401
	e.check(t, ruled("/", map[string]string{"cookie": ""})(e)) // none: ok
	for _, tc := range []struct {
		policy, answer string
		want           float64
	}{
		{"user", "ok", 2},
		{"user", "antiforgery_required", 1},
		{"user", "unauthenticated", 1},
		{"none", "ok", 1},
	} {
		if got := testutil.ToFloat64(m.checks.WithLabelValues(DefaultFrontend, tc.policy, tc.answer)); got != tc.want {
			t.Errorf("checks{frontend=default,policy=%s,answer=%s} = %v, want %v", tc.policy, tc.answer, got, tc.want)
		}
	}
	// A pass's series exist from the start, at 0, for every policy of
	// every frontend and of "unknown", so a rate() alert needs no absent().
	if n := testutil.CollectAndCount(m.latency); n != 10 {
		t.Errorf("%d latency series, want one per policy for default and unknown (10)", n)
	}
	if got := testutil.ToFloat64(m.checks.WithLabelValues(DefaultFrontend, "client", "ok")); got != 0 {
		t.Errorf("checks{policy=client,answer=ok} = %v before any client check", got)
	}
}
