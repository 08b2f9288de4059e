package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPeersBenchRunsOnce is how `make test` runs `make bench-peers` once:
// every part real (Redis, Envoy, envoy-bff, oauth2-proxy, the local
// provider), tiny durations, one round. Every row must be there with
// allowed requests and no errors; a missing oauth2-proxy or Envoy fails it.
func TestPeersBenchRunsOnce(t *testing.T) {
	proxyBin := os.Getenv("OAUTH2_PROXY_BIN")
	if proxyBin == "" {
		proxyBin = filepath.Join("..", "..", "..", ".tools", "bin", "oauth2-proxy")
	}
	var progress bytes.Buffer
	rep, err := run(t.Context(), config{duration: 200 * time.Millisecond, rounds: 1, concurrency: 4, proxyBin: proxyBin, progress: &progress})
	if err != nil {
		t.Fatalf("bench-peers run: %v\nprogress:\n%s", err, progress.String())
	}
	want := []string{
		"envoy-bff Check (gRPC)", "oauth2-proxy /oauth2/auth (HTTP)",
		"Envoy floor (envoy-bff's Envoy)", "Envoy → envoy-bff (/api/, gRPC ext_authz)",
		"Envoy floor (peers' Envoy)", "Envoy → oauth2-proxy (/api/, HTTP ext_authz)",
		"Envoy oauth2 filter (/api/, HMAC cookies)",
	}
	if len(rep.rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rep.rows), len(want))
	}
	for i, r := range rep.rows {
		if r.name != want[i] {
			t.Errorf("row %d is %q, want %q", i, r.name, want[i])
		}
		if len(r.results) != 1 {
			t.Errorf("%s: %d rounds measured, want 1", r.name, len(r.results))
			continue
		}
		res := r.results[0]
		if res.Requests == 0 || res.Errors != 0 {
			t.Errorf("%s: %d allowed requests and %d errors (first: %v), want some and none", r.name, res.Requests, res.Errors, res.FirstError)
		}
		if len(res.CPU) != len(r.pids()) {
			t.Errorf("%s: CPU read for %d processes, want %d", r.name, len(res.CPU), len(r.pids()))
		}
	}
	md := filepath.Join(t.TempDir(), "performance.md")
	rep.command = "go test"
	if err := writeMarkdown(md, rep); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.text(&text)
	for _, name := range want {
		if !strings.Contains(string(raw), "| "+name+" |") || !strings.Contains(text.String(), name) {
			t.Errorf("row %q missing from the Markdown or the text table", name)
		}
	}
}
