package oidcflow

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

func TestProviderDiscovery(t *testing.T) {
	t.Parallel()

	t.Run("T62_down_at_start_then_ready", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		e.provider.SetDown(true)
		done := make(chan error, 1)
		go func() { done <- e.h.Start(t.Context()) }()
		waitFor(t, func() bool { return strings.Contains(e.logs.String(), "discovery failed") })
		if e.h.Ready() {
			t.Fatal("ready while the provider is down")
		}
		wantError(t, e.browser().get("/bff/login"), http.StatusServiceUnavailable, "provider_unavailable")
		e.provider.SetDown(false)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("discovery did not recover")
		}
		if !e.h.Ready() {
			t.Fatal("not ready after discovery")
		}
		e.browser().login("/")
	})

	t.Run("start_ends_with_its_context", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		e.provider.SetDown(true)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		if err := e.h.Start(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("issuer_mismatch_never_ready", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		e.hook(oidctest.PathDiscovery, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"issuer":"https://evil.example","authorization_endpoint":"https://evil.example/a","token_endpoint":"https://evil.example/t","jwks_uri":"https://evil.example/j"}`))
		})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		if err := e.h.Start(ctx); err == nil || e.h.Ready() {
			t.Fatal("a discovery document for another issuer was accepted")
		}
	})

	t.Run("T40_oversized_discovery_refused", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		e.hook(oidctest.PathDiscovery, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"issuer":"` + strings.Repeat("x", 2<<20) + `"}`))
		})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		if err := e.h.Start(ctx); err == nil || e.h.Ready() {
			t.Fatal("oversized discovery accepted")
		}
		if !strings.Contains(e.logs.String(), "larger than 1 MiB") {
			t.Fatal("size limit not the reason")
		}
	})
}

func TestNewHandlerValidates(t *testing.T) {
	t.Parallel()
	_, err := NewHandler(Config{}, Deps{})
	if err == nil || !strings.Contains(err.Error(), "issuer: required") {
		t.Fatalf("err = %v", err)
	}
	_, err = NewHandler(validConfig(), Deps{})
	if err == nil || !strings.Contains(err.Error(), "deps.Store") {
		t.Fatalf("err = %v", err)
	}
	_, err = NewRefresher(validConfig(), Deps{})
	if err == nil || !strings.Contains(err.Error(), "deps.Provider") {
		t.Fatalf("err = %v", err)
	}
}
