package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// TestReadyz covers T62 at the admin listener: with the provider down at
// start, /readyz says not ready, and turns ready once the provider answers,
// without a restart.
func TestReadyz(t *testing.T) {
	t.Parallel()
	t.Run("T62_provider_down_at_start_not_ready_then_ready", func(t *testing.T) {
		t.Parallel()
		p, err := oidctest.NewProvider(oidctest.ProviderConfig{Clients: []oidctest.Client{{
			ID: "envoy-bff", Secret: "test-secret-5d2c", RedirectURIs: []string{"https://app.example/bff/callback"},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		issuer, err := p.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		p.SetDown(true)

		scfg := sessiontest.Config()
		store := session.NewMemoryStore(scfg, sessiontest.KeyRing(t), time.Now)
		cfg := oidcflow.DefaultConfig()
		cfg.Issuer, cfg.ClientID, cfg.ClientSecret = issuer, "envoy-bff", "test-secret-5d2c"
		cfg.RedirectURL = "https://app.example/bff/callback"
		cfg.ProviderTimeout = time.Second
		flow, err := oidcflow.NewHandler(cfg, oidcflow.Deps{
			Store: store, Cookie: scfg.Cookie, AbsoluteLifetime: scfg.AbsoluteLifetime, IdleTimeout: scfg.IdleTimeout,
			Antiforgery: oidcflow.AntiforgeryConfig{Header: "X-CSRF", Value: "1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan error, 1)
		go func() { started <- flow.Start(t.Context()) }()
		var draining atomic.Bool
		// A second frontend whose provider never answers: the replica turns
		// ready with the first one all the same, and lists both.
		down := &stuck{}
		frontends := func() []frontendReady {
			return []frontendReady{{name: "default", ready: flow.Ready()}, {name: "partner", ready: down.Ready()}}
		}
		admin := httptest.NewServer(adminMux(store, frontends, &draining, prometheus.NewRegistry(), http.NotFoundHandler()))
		t.Cleanup(admin.Close)
		readyz := func() (int, string) {
			t.Helper()
			resp, err := http.Get(admin.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		for range 3 { // across several discovery attempts
			if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "provider discovery pending") {
				t.Fatalf("/readyz with the provider down: %d %q", code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		p.SetDown(false)
		select {
		case err := <-started:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("discovery did not recover within 10s of the provider coming up")
		}
		want := "ready\nfrontend default: ready\nfrontend partner: provider discovery pending\n"
		if code, body := readyz(); code != http.StatusOK || body != want {
			t.Fatalf("/readyz after discovery: %d %q", code, body)
		}
	})
}

// stuck is a frontend whose provider is never discovered.
type stuck struct{}

func (stuck) Ready() bool { return false }
