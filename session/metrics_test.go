package session_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// TestStoreErrorMetrics: store failures count by operation; answers
// (not found, a replayed jti) do not. The failure is real: a closed store
// answers ErrUnavailable as an unreachable Redis does.
func TestStoreErrorMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b, err := session.Instrument(newMemory(t, sessiontest.NewClock(sessiontest.Epoch).Now), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id := sessiontest.ID(t, 1)
	if _, err := b.Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("get of an absent session: %v", err)
	}
	if first, err := b.UseOnce(ctx, "jti", 60e9); err != nil || !first {
		t.Fatalf("use once: %v %v", first, err)
	}
	if first, err := b.UseOnce(ctx, "jti", 60e9); err != nil || first {
		t.Fatalf("replayed use once: %v %v", first, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := b.Get(ctx, id); !errors.Is(err, session.ErrUnavailable) {
			t.Fatalf("get on a closed store: %v", err)
		}
	}
	if err := b.Delete(ctx, id); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("delete on a closed store: %v", err)
	}
	if err := b.Ping(ctx); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("ping on a closed store: %v", err)
	}
	want := map[string]float64{"get": 2, "delete": 1, "ping": 1, "use_once": 0, "create": 0}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "envoy_bff_store_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	for op, w := range want {
		if v, ok := got[op]; !ok || v != w {
			t.Errorf("envoy_bff_store_errors_total{operation=%q} = %v (present %v), want %v", op, v, ok, w)
		}
	}
	if n := testutil.CollectAndCount(reg, "envoy_bff_store_errors_total"); n != 15 {
		t.Errorf("%d series, want one per operation (15) from the start", n)
	}
}
