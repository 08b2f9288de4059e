package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/envoy-bff/envoy-bff/test/bench/measure"
)

// httpRoute is one route loaded through Envoy over HTTP.
type httpRoute struct {
	name     string
	url      string // Envoy's origin
	path     string
	headers  map[string]string // besides the browser's own
	envoyPid int
	authzPid int // the ext_authz server's; 0 where there is none
}

// httpResult is one round of HTTP load through Envoy.
type httpResult struct {
	requests, errors   int
	perSec             float64
	p50, p99           time.Duration
	envoyCPU, authzCPU time.Duration // per request
}

func (r httpResult) cpu() time.Duration { return r.envoyCPU + r.authzCPU }

// browserHeaders are what Chromium sends with a same-origin fetch from an
// SPA, besides the app's cookie and anti-forgery header: every route gets
// them, so Envoy parses the same request everywhere and ext_authz
// (allowed_headers) has real headers to leave out. The cookie jar holds
// analytics and preference cookies next to the session.
var browserHeaders = [][2]string{
	{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	{"Accept", "application/json, text/plain, */*"},
	{"Accept-Language", "en-GB,en-US;q=0.9,en;q=0.8"},
	{"Sec-Ch-Ua", `"Chromium";v="131", "Not_A Brand";v="24"`},
	{"Sec-Ch-Ua-Mobile", "?0"},
	{"Sec-Ch-Ua-Platform", `"Linux"`},
	{"Sec-Fetch-Site", "same-origin"},
	{"Sec-Fetch-Mode", "cors"},
	{"Sec-Fetch-Dest", "empty"},
	{"Priority", "u=1, i"},
}

const browserCookies = "_ga=GA1.1.1234567890.1733480000; _ga_ABCDEF=GS1.1.1733480000.1.1.1733480100.0.0.0; theme=dark; consent=necessary%2Canalytics"

// loadHTTP drives GETs on route through Envoy with conc clients for d and
// reads Envoy's and the ext_authz server's CPU time.
func loadHTTP(ctx context.Context, route httpRoute, conc int, d time.Duration) (httpResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	call := func() bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, route.url+route.path, nil)
		if err != nil {
			return false
		}
		for _, kv := range browserHeaders {
			req.Header.Set(kv[0], kv[1])
		}
		req.Header.Set("Referer", route.url+"/orders/42?tab=history")
		req.Header.Set("Cookie", browserCookies)
		for k, v := range route.headers {
			if k == "Cookie" {
				v = browserCookies + "; " + v
			}
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
	for range conc { // warm up the connections; a route that refuses is a broken setup
		if !call() {
			return httpResult{}, fmt.Errorf("warm-up request to %s failed", route.path)
		}
	}
	pids := []int{route.envoyPid}
	if route.authzPid != 0 {
		pids = append(pids, route.authzPid)
	}
	r, err := measure.Run(ctx, measure.Load{Concurrency: conc, Duration: d, Pids: pids, Do: func(context.Context, int) error {
		if !call() {
			return errors.New("not the allowed answer")
		}
		return nil
	}})
	if err != nil {
		return httpResult{}, fmt.Errorf("%s: %w", route.path, err)
	}
	res := httpResult{requests: r.Requests, errors: r.Errors, perSec: r.PerSec, p50: r.P50, p99: r.P99, envoyCPU: r.CPU[0]}
	if route.authzPid != 0 {
		res.authzCPU = r.CPU[1]
	}
	return res, nil
}

// medianHTTP is the round with the median CPU per request.
func medianHTTP(rs []httpResult) httpResult { return measure.Median(rs, httpResult.cpu) }

// printHTTPTable shows each route through Envoy against the no-auth route
// (routes[0]) and against Envoy calling the no-op ext_authz server
// (routes[1]): what is envoy-bff's is the part above that second floor.
func printHTTPTable(w io.Writer, routes []httpRoute, results map[string][]httpResult, conc int) {
	fmt.Fprintf(w, "\nThrough Envoy over HTTP (browser-like requests, %d in flight; the API verifies the same bearer on every route; median round)\n\n", conc)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route\treq/s\tp50\tp99\tEnvoy CPU µs/req\text_authz server CPU µs/req\tpeak RSS MB (Envoy, server)\tvs no-auth: CPU\tvs no-auth: req/s\tvs Envoy+no-op ext_authz: CPU\terrors\t")
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	ratio := func(m httpResult, floor string) string {
		if len(results[floor]) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", float64(m.cpu())/float64(medianHTTP(results[floor]).cpu()))
	}
	for _, r := range routes {
		if len(results[r.name]) == 0 { // --only may leave routes out
			continue
		}
		m := medianHTTP(results[r.name])
		errs := 0
		for _, x := range results[r.name] {
			errs += x.errors
		}
		rss := fmt.Sprintf("%.1f", peakRSS(r.envoyPid))
		if r.authzPid != 0 {
			rss += fmt.Sprintf(", %.1f", peakRSS(r.authzPid))
		}
		rate := "-"
		if f := results[routes[0].name]; len(f) > 0 {
			rate = fmt.Sprintf("%.2f×", m.perSec/medianHTTP(f).perSec)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%d\t\n", r.name, m.perSec, m.p50.Round(time.Microsecond), m.p99.Round(time.Microsecond),
			us(m.envoyCPU), us(m.authzCPU), rss, ratio(m, routes[0].name), rate, ratio(m, routes[1].name), errs)
	}
	tw.Flush()
}
