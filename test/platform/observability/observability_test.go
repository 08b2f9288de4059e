package observability

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// artefacts are the files under test, from the repository root.
var (
	dashboardPath = filepath.Join("..", "..", "..", "envoy", "observability", "grafana-dashboard.json")
	alertsPath    = filepath.Join("..", "..", "..", "envoy", "observability", "alerts.yaml")
	docsPath      = filepath.Join("..", "..", "..", "docs", "observability.md")
)

// TestDashboardAndAlerts: the dashboard and the alert rules load with the
// real tools, every expression parses, and every metric they name is one a
// running envoy-bff serves, so no panel shows "No data" and no alert stays
// silent because of a misspelled or renamed metric.
func TestDashboardAndAlerts(t *testing.T) {
	t.Parallel()
	d, dashExprs, err := dashboardExprs(dashboardPath)
	if err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	groups, ruleExprsList, err := ruleExprs(alertsPath)
	if err != nil {
		t.Fatalf("alerts: %v", err)
	}
	if len(dashExprs) < 15 || len(ruleExprsList) < 8 {
		t.Fatalf("%d dashboard and %d rule expressions: the files lost content", len(dashExprs), len(ruleExprsList))
	}

	bff := startReplica(t)
	// One denied check, so the replica has answered Envoy once.
	cc, err := harness.DialCheck(bff.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if r, err := cc.API(t.Context(), "/api/orders", ""); err != nil || r.Status != 401 {
		t.Fatalf("anonymous check: %+v %v", r, err)
	}
	s, err := scrapeMetrics(t.Context(), bff)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`envoy_bff_frontend_ready{frontend="default"} 1`,
		`envoy_bff_checks_total{answer="unauthenticated",frontend="default",policy="user"} 1`,
	} {
		if !strings.Contains(s.text, line+"\n") {
			t.Errorf("scrape lacks %s", line)
		}
	}

	t.Run("dashboard metrics are served", func(t *testing.T) {
		for _, m := range unknownMetrics(dashExprs, s.names) {
			t.Error(m)
		}
	})
	t.Run("alert metrics are served", func(t *testing.T) {
		for _, m := range unknownMetrics(ruleExprsList, s.names) {
			t.Error(m)
		}
	})
	t.Run("a misspelled metric is caught", func(t *testing.T) {
		e, err := parse("probe", `sum(rate(envoy_bff_check_total[5m]))`)
		if err != nil {
			t.Fatal(err)
		}
		if got := unknownMetrics([]expr{e}, s.names); len(got) != 1 {
			t.Fatalf("misspelled envoy_bff_check_total: %v", got)
		}
	})
	t.Run("dashboard selects by job and frontend", func(t *testing.T) {
		// Every selector follows the $job variable, and every selector of a
		// metric whose series carry frontend follows the $frontend variable.
		for _, e := range dashExprs {
			if !strings.HasPrefix(e.where, "panel ") {
				continue // the variables' queries list the values to choose from
			}
			for _, vs := range selectors(e) {
				name := metricName(vs)
				if m := matcher(vs, "job"); m == nil || m.Type != labels.MatchRegexp || m.Value != "$job" {
					t.Errorf("%s: %s does not select job=~\"$job\"", e.where, vs)
				}
				if !s.labels[name]["frontend"] {
					continue
				}
				if m := matcher(vs, "frontend"); m == nil || m.Type != labels.MatchRegexp || m.Value != "$frontend" {
					t.Errorf("%s: %s does not select frontend=~\"$frontend\"", e.where, vs)
				}
			}
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		for _, v := range []string{"datasource", "job", "frontend"} {
			if !vars[v] {
				t.Errorf("no template variable %q", v)
			}
		}
	})
	t.Run("alerts have severity, summary and a runbook in the docs", func(t *testing.T) {
		doc, err := os.ReadFile(docsPath)
		if err != nil {
			t.Fatal(err)
		}
		anchors := map[string]bool{}
		for _, h := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(doc), -1) {
			anchors[slug(h[1])] = true
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
					t.Errorf("%s: severity %q, want warning or critical", r.Alert, sev)
				}
				if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("%s: no summary or description", r.Alert)
				}
				url := r.Annotations["runbook_url"]
				_, anchor, ok := strings.Cut(url, "docs/observability.md#")
				if !ok || !anchors[anchor] {
					t.Errorf("%s: runbook_url %q names no heading of docs/observability.md", r.Alert, url)
				}
			}
		}
	})
}

// slug is a Markdown heading's anchor as GitHub makes it.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}
