package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// storeErrors reads envoy_bff_store_errors_total from reg by frontend, then operation.
func storeErrors(t *testing.T, reg prometheus.Gatherer) map[string]map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "envoy_bff_store_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if got[labels["frontend"]] == nil {
				got[labels["frontend"]] = map[string]float64{}
			}
			got[labels["frontend"]][labels["operation"]] = m.GetCounter().GetValue()
		}
	}
	return got
}

// TestStoreErrorMetrics: store failures count by operation and frontend;
// answers (not found, a replayed jti) do not. The failure is real: a
// closed store answers ErrUnavailable as an unreachable Redis does.
func TestStoreErrorMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b, err := session.Instrument(newMemory(t, sessiontest.NewClock(sessiontest.Epoch).Now), reg)
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "envoy_bff_store_errors_total"); n != 19 {
		t.Errorf("%d series, want one per operation (19) from the start", n)
	}
	views := map[string]session.Backend{}
	for _, name := range []string{"shop", session.DefaultFrontend} {
		if views[name], err = b.Frontend(name, sessiontest.Config().FrontendDefaults()); err != nil {
			t.Fatal(err)
		}
	}
	if n := testutil.CollectAndCount(reg, "envoy_bff_store_errors_total"); n != 38 {
		t.Errorf("%d series, want 19 for default and 19 for shop as soon as its view exists", n)
	}
	if _, err := b.Frontend("Bad Name", sessiontest.Config().FrontendDefaults()); err == nil {
		t.Error("an instrumented store opened a view with a bad name")
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
	for range 3 {
		if _, err := views["shop"].Get(ctx, id); !errors.Is(err, session.ErrUnavailable) {
			t.Fatalf("get on a view of a closed store: %v", err)
		}
	}
	// A Check's read (authz asks GetShared when the store has it) counts as a get.
	shared, ok := views["shop"].(interface {
		GetShared(context.Context, session.ID) (*sessionpb.Session, error)
	})
	if !ok {
		t.Fatal("an instrumented view has no GetShared: Check would read copies")
	}
	if _, err := shared.GetShared(ctx, id); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("get shared on a view of a closed store: %v", err)
	}
	if err := views[session.DefaultFrontend].Ping(ctx); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("ping on the default view of a closed store: %v", err)
	}
	if _, _, err := views["shop"].GetWithDerived(ctx, id, "orders"); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("get with derived on a view of a closed store: %v", err)
	}
	if _, err := b.GetDerivedToken(ctx, id, "orders"); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("get derived token on a closed store: %v", err)
	}
	if _, _, err := views["shop"].Inspect(ctx, id); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("inspect on a view of a closed store: %v", err)
	}
	tok := &sessionpb.ClientToken{AccessToken: "t", ExpiresAtUnixMs: sessiontest.Epoch.Add(time.Hour).UnixMilli()}
	if err := b.PutDerivedToken(ctx, id, "orders", tok); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("put derived token on a closed store: %v", err)
	}
	if _, err := b.GetDerivedToken(ctx, id, "Bad Name"); err == nil || errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("get derived token with a bad profile: %v", err) // a refusal, not counted
	}
	want := map[string]map[string]float64{
		session.DefaultFrontend: {"get": 2, "delete": 1, "ping": 2, "use_once": 0, "create": 0,
			"get_derived_token": 1, "put_derived_token": 1, "get_with_derived": 0, "inspect": 0},
		"shop": {"get": 4, "delete": 0, "ping": 0, "get_with_derived": 1, "get_derived_token": 0, "inspect": 1},
	}
	got := storeErrors(t, reg)
	for fe, ops := range want {
		for op, w := range ops {
			if v, ok := got[fe][op]; !ok || v != w {
				t.Errorf("envoy_bff_store_errors_total{frontend=%q,operation=%q} = %v (present %v), want %v", fe, op, v, ok, w)
			}
		}
	}
}

// TestStoreErrorRecordingDoesNotAllocate: counting a failure, on the
// backend or a view, costs no allocation on the request path.
func TestStoreErrorRecordingDoesNotAllocate(t *testing.T) { // not parallel: AllocsPerRun
	b, err := session.Instrument(newMemory(t, nil), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Frontend("shop", sessiontest.Config().FrontendDefaults())
	if err != nil {
		t.Fatal(err)
	}
	fail := session.ErrUnavailable
	for _, s := range []session.Backend{b, v} {
		counter, record := session.StoreErrorCounter(s, "get")
		if n := testing.AllocsPerRun(100, func() { record(fail) }); n != 0 {
			t.Errorf("recording a failure allocates %v times", n)
		}
		if got := testutil.ToFloat64(counter); got < 100 {
			t.Errorf("counter = %v, want every failure counted", got)
		}
	}
}

// TestUnreplicatedWritesCountEveryView: a view's token-carrying writes that
// WAIT found unreplicated count in the backend's one counter.
func TestUnreplicatedWritesCountEveryView(t *testing.T) {
	t.Parallel()
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{sessiontest.StartRedis(t)}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	cfg := sessiontest.Config()
	cfg.Redis.WaitReplicas, cfg.Redis.WaitTimeout = 1, 10*time.Millisecond // no replica: every write is unreplicated
	root := session.NewRedisStore(client, cfg, sessiontest.KeyRing(t), nil)
	v, err := root.Frontend("shop", cfg.FrontendDefaults())
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, v, sessiontest.ID(t, 1), sessiontest.Record(time.Now()))
	if got := root.UnreplicatedWrites(); got != 1 {
		t.Fatalf("UnreplicatedWrites = %d, want the view's 1", got)
	}
}
