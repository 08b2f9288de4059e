package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"text/tabwriter"
	"time"
)

// envoyTarget is the Redis-backed stack, loaded through Envoy over HTTP.
type envoyTarget struct {
	url              string
	envoyPid, bffPid int
	cookie, bearer   string
}

// httpResult is one round of HTTP load through Envoy.
type httpResult struct {
	requests, errors int
	perSec           float64
	p50, p99         time.Duration
	envoyCPU, bffCPU time.Duration // per request
}

// loadHTTP drives GETs through Envoy: /api/whoami with the session (ext_authz
// on), or /bench-floor/whoami, the same upstream without ext_authz, carrying
// the bearer envoy-bff would add so the API does the same work for both.
func loadHTTP(ctx context.Context, t *envoyTarget, floor bool, conc int, d time.Duration) (httpResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	path, headers := "/api/whoami", map[string]string{"Cookie": t.cookie, "X-CSRF": "1"}
	if floor {
		path, headers = "/bench-floor/whoami", map[string]string{"Authorization": "Bearer " + t.bearer}
	}
	call := func() bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url+path, nil)
		if err != nil {
			return false
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for range conc { // warm up the connections
		if !call() {
			return httpResult{}, fmt.Errorf("warm-up request to %s failed", path)
		}
	}
	e0, err := cpuTime(t.envoyPid)
	if err != nil {
		return httpResult{}, err
	}
	b0, err := cpuTime(t.bffPid)
	if err != nil {
		return httpResult{}, err
	}
	start := time.Now()
	deadline := start.Add(d)
	var mu sync.Mutex
	var lat []time.Duration
	var errs int
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			bad := 0
			for n := 0; n < 10_000_000 && time.Now().Before(deadline); n++ {
				t0 := time.Now()
				if !call() {
					bad++
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	e1, _ := cpuTime(t.envoyPid)
	b1, _ := cpuTime(t.bffPid)
	if len(lat) == 0 {
		return httpResult{}, fmt.Errorf("no successful requests to %s (%d errors)", path, errs)
	}
	slices.Sort(lat)
	n := time.Duration(len(lat) + errs)
	return httpResult{
		requests: len(lat), errors: errs, perSec: float64(len(lat)) / elapsed.Seconds(),
		p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		envoyCPU: (e1 - e0) / n, bffCPU: (b1 - b0) / n,
	}, nil
}

func medianHTTP(rs []httpResult) httpResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b httpResult) int { return int((a.envoyCPU + a.bffCPU) - (b.envoyCPU + b.bffCPU)) })
	return s[len(s)/2]
}

func printHTTPTable(w io.Writer, t *envoyTarget, floor, api []httpResult) {
	f, a := medianHTTP(floor), medianHTTP(api)
	fmt.Fprintf(w, "\nThrough Envoy over HTTP (the API verifies the same bearer on both routes; median round)\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route\treq/s\tp50\tp99\tEnvoy CPU µs/req\tenvoy-bff CPU µs/req\tpeak RSS MB (Envoy, envoy-bff)\tvs floor: CPU\tvs floor: req/s\terrors\t")
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	fmt.Fprintf(tw, "/bench-floor/ (no ext_authz)\t%.0f\t%s\t%s\t%.1f\t%.1f\t%.1f\t-\t-\t%d\t\n", f.perSec, f.p50.Round(time.Microsecond), f.p99.Round(time.Microsecond), us(f.envoyCPU), us(f.bffCPU), peakRSS(t.envoyPid), f.errors)
	fmt.Fprintf(tw, "/api/ (ext_authz, Redis)\t%.0f\t%s\t%s\t%.1f\t%.1f\t%.1f, %.1f\t%.2f×\t%.2f×\t%d\t\n", a.perSec, a.p50.Round(time.Microsecond), a.p99.Round(time.Microsecond), us(a.envoyCPU), us(a.bffCPU),
		peakRSS(t.envoyPid), peakRSS(t.bffPid), float64(a.envoyCPU+a.bffCPU)/float64(f.envoyCPU+f.bffCPU), a.perSec/f.perSec, a.errors)
	tw.Flush()
}

// printHTTPDPoP is the DPoP row through Envoy: the same /api/ request for a
// frontend with oidc.dpop (ES256), its Envoy + envoy-bff CPU against the
// floor and against the Bearer /api/ row (issue 16's budget: under 1.5×).
func printHTTPDPoP(w io.Writer, floor, api, dpop []httpResult) {
	f, a, d := medianHTTP(floor), medianHTTP(api), medianHTTP(dpop)
	fmt.Fprintf(w, "\nDPoP through Envoy (a frontend with oidc.dpop, EdDSA: Check signs a proof per request; the API verifies it)\n\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route\treq/s\tp50\tp99\tEnvoy CPU µs/req\tenvoy-bff CPU µs/req\tvs floor: CPU\tvs Bearer /api/: CPU\tvs Bearer: envoy-bff CPU\terrors\t")
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	fmt.Fprintf(tw, "/api/ (ext_authz, Redis, DPoP EdDSA)\t%.0f\t%s\t%s\t%.1f\t%.1f\t%.2f×\t%.2f×\t%.2f×\t%d\t\n", d.perSec, d.p50.Round(time.Microsecond), d.p99.Round(time.Microsecond),
		us(d.envoyCPU), us(d.bffCPU), float64(d.envoyCPU+d.bffCPU)/float64(f.envoyCPU+f.bffCPU), float64(d.envoyCPU+d.bffCPU)/float64(a.envoyCPU+a.bffCPU),
		float64(d.bffCPU)/float64(a.bffCPU), d.errors)
	tw.Flush()
}
