package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// budget is one of issue 18's targets: a ratio of two measurements of the
// same run, and the bound it must stay within.
type budget struct {
	name   string
	ratio  func(*report) (float64, bool) // false: not measured in this run
	bound  float64
	atMost bool // the ratio must be ≤ bound (else ≥)
}

// budgets are the release's per-request budgets, each a ratio against a
// floor or a plainer configuration measured in the same run.
func budgets() []budget {
	return []budget{
		{"through Envoy: /api/ (Envoy + envoy-bff CPU) vs the no-auth route", httpRatio("/api/ (envoy-bff, Redis)", "no ext_authz (/bench-floor/)"), 2.0, true},
		{"through Envoy: /api/ vs Envoy + no-op ext_authz (what is envoy-bff's)", httpRatio("/api/ (envoy-bff, Redis)", "Envoy + no-op ext_authz"), 0, true},
		{"Check, Redis sessions: CPU vs floor-redis", grpcCPU("bff-redis", "floor-redis"), 1.15, true},
		{"Check, Redis sessions: checks/s vs floor-redis", grpcRate("bff-redis", "floor-redis"), 0.85, false},
		{"Check, session cache: CPU vs floor-noio", grpcCPU("bff-redis-cache", "floor-noio"), 1.05, true},
		{"Check, memory store: CPU vs floor-noio", grpcCPU("bff-memory", "floor-noio"), 1.3, true},
		{"100 frontends vs 1 (memory store)", grpcCPU("bff-memory-100fe", "bff-memory"), 1.03, true},
		{"route with a cached derived token (token profile) vs plain", grpcCPU("bff-redis-exchange", "bff-redis"), 1.10, true},
		{"claims requirement vs an extension nothing reads", grpcCPU("bff-redis-require", "bff-redis-ext"), 1.02, true},
		{"DPoP proof per Check (ES256) vs plain", grpcCPU("bff-redis-dpop", "bff-redis"), 1.5, true},
		{"DPoP proof per Check (EdDSA) vs plain", grpcCPU("bff-redis-dpop-eddsa", "bff-redis"), 1.5, true},
		{"most sessions stored vs fewest: CPU per check", scaleCPU, 1.05, true},
		{"most sessions stored vs fewest: CPU per check vs floor-redis", scaleVsFloor, 1.05, true},
	}
}

func grpcCPU(name, floor string) func(*report) (float64, bool) {
	return func(r *report) (float64, bool) {
		a, b := r.grpc[name], r.grpc[floor]
		if len(a) == 0 || len(b) == 0 {
			return 0, false
		}
		return float64(median(a).cpuPerCheck) / float64(median(b).cpuPerCheck), true
	}
}

func grpcRate(name, floor string) func(*report) (float64, bool) {
	return func(r *report) (float64, bool) {
		a, b := r.grpc[name], r.grpc[floor]
		if len(a) == 0 || len(b) == 0 {
			return 0, false
		}
		return median(a).perSec / median(b).perSec, true
	}
}

func httpRatio(name, floor string) func(*report) (float64, bool) {
	return func(r *report) (float64, bool) {
		a, b := r.http[name], r.http[floor]
		if len(a) == 0 || len(b) == 0 {
			return 0, false
		}
		return float64(medianHTTP(a).cpu()) / float64(medianHTTP(b).cpu()), true
	}
}

// scaleCPU is bff-redis's CPU per check with the most sessions stored
// against the fewest; scaleVsFloor the same of its ratio to floor-redis
// measured against the same keyspace (what changes with the count in Redis
// or in the machine shows up in the floor too).
func scaleCPU(r *report) (float64, bool) {
	if len(r.scale) < 2 {
		return 0, false
	}
	first, most := r.scale[0], largest(r.scale)
	return float64(median(most.bff).cpuPerCheck) / float64(median(first.bff).cpuPerCheck), true
}

func scaleVsFloor(r *report) (float64, bool) {
	if len(r.scale) < 2 {
		return 0, false
	}
	rel := func(row scaleRow) float64 {
		return float64(median(row.bff).cpuPerCheck) / float64(median(row.floor).cpuPerCheck)
	}
	return rel(largest(r.scale)) / rel(r.scale[0]), true
}

// largest is the row with the most sessions stored.
func largest(rows []scaleRow) scaleRow {
	most := rows[0]
	for _, r := range rows {
		if r.sessions > most.sessions {
			most = r
		}
	}
	return most
}

// printTargets is the last table: each budget, its ratio in this run, and
// whether it holds. A bound of 0 is informational.
func printTargets(w io.Writer, r *report) {
	fmt.Fprintf(w, "\nBudgets (ratios of this run's medians)\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "budget\tmeasured\tbound\tholds\t")
	for _, b := range budgets() {
		v, ok := b.ratio(r)
		if !ok {
			fmt.Fprintf(tw, "%s\tnot measured\t\t\t\n", b.name)
			continue
		}
		if b.bound == 0 {
			fmt.Fprintf(tw, "%s\t%.2f×\t-\t-\t\n", b.name, v)
			continue
		}
		op, holds := "≤", v <= b.bound
		if !b.atMost {
			op, holds = "≥", v >= b.bound
		}
		fmt.Fprintf(tw, "%s\t%.2f×\t%s %.2f×\t%s\t\n", b.name, v, op, b.bound, map[bool]string{true: "yes", false: "NO"}[holds])
	}
	tw.Flush()
}
