package observability

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// scrape is one /metrics scrape of a replica: the sample names it holds
// (a histogram's _bucket, _sum and _count, a counter's name as served) and
// the label names each one's series carry.
type scrape struct {
	names  map[string]bool
	labels map[string]map[string]bool // sample name → label names
	text   string
}

// startReplica starts Redis, the local OpenID provider and one envoy-bff
// replica (bin/envoy-bff, found through ENVOY_BFF_BIN; the test fails when
// it is missing) with Redis sessions and the session cache on, so every
// metric family envoy-bff has is served. Cleanup stops all three.
func startReplica(t *testing.T) *harness.BFF {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	redis, addr, err := harness.StartRedis(ctx, dir)
	if err != nil {
		t.Fatalf("start redis: %v", err)
	}
	t.Cleanup(func() { redis.Stop(2 * time.Second) })

	const appURL = "http://app.test"
	provider, err := oidctest.NewProvider(oidctest.ProviderConfig{Clients: []oidctest.Client{{
		ID: harness.ClientID, Secret: harness.ClientSecret,
		RedirectURIs:           []string{appURL + "/bff/callback"},
		PostLogoutRedirectURIs: []string{appURL + "/"},
	}}})
	if err != nil {
		t.Fatalf("build provider: %v", err)
	}
	issuer, err := provider.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("start provider: %v", err)
	}
	t.Cleanup(func() { _ = provider.Close() })

	enc, hash, err := harness.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	cfg := harness.BFFConfigDoc(issuer, appURL, "redis://"+addr, enc, hash)
	cfg["log"] = map[string]any{"level": "info", "format": "json"}
	cfg["session"].(map[string]any)["cache"] = map[string]any{"ttl": "2s"}
	bff, err := harness.StartBFF(ctx, harness.BFFOptions{Dir: dir, Config: cfg})
	if err != nil {
		t.Fatalf("start envoy-bff (ENVOY_BFF_BIN, or `make build` for bin/envoy-bff): %v", err)
	}
	t.Cleanup(func() { bff.Stop(5 * time.Second) })
	if err := bff.WaitReady(ctx); err != nil {
		t.Fatalf("envoy-bff not ready: %v\n%s", err, bff.Tail(4000))
	}
	return bff
}

// scrapeMetrics reads the replica's /metrics and parses it with
// Prometheus's own text-format parser.
func scrapeMetrics(ctx context.Context, bff *harness.BFF) (scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+bff.AdminAddr+"/metrics", nil)
	if err != nil {
		return scrape{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return scrape{}, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return scrape{}, fmt.Errorf("scrape: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return scrape{}, fmt.Errorf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return scrape{}, fmt.Errorf("parse scrape: %w", err)
	}
	s := scrape{names: map[string]bool{}, labels: map[string]map[string]bool{}, text: string(body)}
	for name, mf := range families {
		names := []string{name}
		switch mf.GetType().String() {
		case "HISTOGRAM":
			names = []string{name + "_bucket", name + "_sum", name + "_count"}
		case "SUMMARY":
			names = append(names, name+"_sum", name+"_count")
		}
		for _, n := range names {
			s.names[n] = true
			s.labels[n] = map[string]bool{}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					s.labels[n][l.GetName()] = true
				}
			}
		}
	}
	return s, nil
}
