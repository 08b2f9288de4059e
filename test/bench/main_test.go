package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchRunsOnce is how `make test` runs `make bench` once, so it cannot
// rot: every configuration, every route through Envoy and the scale table
// (with small counts) are measured for a moment, every request succeeds,
// and every budget gets a ratio. It asserts no speed: that is for
// `make bench` on a quiet machine.
func TestBenchRunsOnce(t *testing.T) {
	for _, env := range []string{"ENVOY_BIN", "ENVOY_BFF_BIN"} {
		if os.Getenv(env) == "" {
			t.Fatalf("%s is not set: run through make test (never skipped)", env)
		}
	}
	floor := filepath.Join(t.TempDir(), "envoy-bff-floor")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", floor, "./floor").CombinedOutput(); err != nil {
		t.Fatalf("build the floor: %v\n%s", err, out)
	}
	var out strings.Builder
	rep, err := run(t.Context(), options{duration: 200 * time.Millisecond, rounds: 1, concurrency: 4, floorBin: floor, scaleSizes: []int{100, 2_000}}, &out)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	for _, tg := range rep.targets {
		rs := rep.grpc[tg.name]
		if len(rs) != 1 || rs[0].checks == 0 || rs[0].errors != 0 {
			t.Errorf("%s: %+v, want one round of successful checks", tg.name, rs)
		}
	}
	if len(rep.targets) < 11 {
		t.Errorf("%d gRPC configurations measured, want every one of the table", len(rep.targets))
	}
	// A checked route succeeds only if its ext_authz server was called: the
	// sample API answers 200 only with the bearer the check adds.
	for _, r := range rep.routes {
		rs := rep.http[r.name]
		if len(rs) != 1 || rs[0].requests == 0 || rs[0].errors != 0 {
			t.Errorf("through Envoy, %s: %+v, want one round of successful requests", r.name, rs)
		}
	}
	if len(rep.scale) != 3 || len(rep.scale[2].bff) != 1 || len(rep.scale[2].floor) != 1 {
		t.Errorf("%d scale rows, want 3 (each size, then the smallest again)", len(rep.scale))
	}
	for _, b := range budgets() {
		if _, ok := b.ratio(rep); !ok {
			t.Errorf("budget %q got no ratio", b.name)
		}
	}
	if !strings.Contains(out.String(), "Budgets (ratios of this run's medians)") {
		t.Errorf("no budget table in the output:\n%s", out.String())
	}
	t.Log(out.String())
}
