package main

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFrontendReadyMetric: envoy_bff_frontend_ready follows each frontend's
// readiness at scrape time, so the "no ready frontend" alert sees a provider
// that comes or goes, and a frontend a reload adds, without a restart.
func TestFrontendReadyMetric(t *testing.T) {
	t.Parallel()
	var shopReady atomic.Bool
	var partner atomic.Bool
	frontends := func() []frontendReady {
		out := []frontendReady{{name: "shop", ready: shopReady.Load()}}
		if partner.Load() {
			out = append(out, frontendReady{name: "partner", ready: true})
		}
		return out
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(newReadyCollector(frontends)); err != nil {
		t.Fatal(err)
	}
	const head = "# HELP envoy_bff_frontend_ready 1 while the frontend's provider is discovered (its /readyz line says ready), else 0.\n# TYPE envoy_bff_frontend_ready gauge\n"
	for _, tc := range []struct {
		name           string
		shop, withPart bool
		want           string
	}{
		{"pending", false, false, `envoy_bff_frontend_ready{frontend="shop"} 0` + "\n"},
		{"discovered", true, false, `envoy_bff_frontend_ready{frontend="shop"} 1` + "\n"},
		{"frontend added by a reload", true, true, `envoy_bff_frontend_ready{frontend="partner"} 1` + "\n" + `envoy_bff_frontend_ready{frontend="shop"} 1` + "\n"},
	} {
		shopReady.Store(tc.shop)
		partner.Store(tc.withPart)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(head+tc.want), "envoy_bff_frontend_ready"); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
