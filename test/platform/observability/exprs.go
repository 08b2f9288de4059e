package observability

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// expr is one PromQL expression of an artefact, named by where it sits.
type expr struct {
	where string // "panel \"Checks by answer\" target A", "alert EnvoyBFFNoReadyFrontend"
	text  string // as the artefact holds it, Grafana variables included
	ast   parser.Expr
}

// promql is the parser Prometheus itself uses for rules and queries, with
// its default options.
var promql = parser.NewParser(parser.Options{})

// rangeVars are the Grafana variables that stand for a range; they are
// replaced by a duration before parsing. Label variables ($job, $frontend)
// sit inside quoted matcher values, where the parser takes them as text.
var rangeVars = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "$__range", "1h")

// labelValues matches a Grafana variable query label_values(<selector>, <label>).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// dashboardExprs decodes the dashboard strictly into the Grafana Foundation
// SDK's types (an unknown field anywhere is an error) and parses every
// Prometheus target's expression and every variable's label_values query.
// It is the classic dashboard JSON that Grafana imports, whose SDK type is
// marked deprecated in favour of the v2 (Kubernetes-style) schema.
//
//lint:ignore SA1019 the import format is the classic dashboard model
func dashboardExprs(path string) (*dashboard.Dashboard, []expr, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	plugins.RegisterDefaultPlugins()
	var d dashboard.Dashboard //lint:ignore SA1019 as above
	if err := strictErr(d.UnmarshalJSONStrict(raw)); err != nil {
		return nil, nil, fmt.Errorf("decode %s strictly: %w", path, err)
	}
	var out []expr
	var errs []error
	// The SDK's PanelOrRowPanel drops a panel that decoded cleanly (v0.0.22
	// returns an empty BuildErrors as a non-nil error there), so the panels
	// are decoded here one by one, as strictly, from the raw JSON.
	// Likewise for the targets (cog.StrictUnmarshalDataquery): each is
	// decoded strictly into the SDK's Prometheus query type here.
	panel := func(p *dashboard.Panel, targets []json.RawMessage) {
		title := cmp.Or(deref(p.Title), fmt.Sprintf("id %d", deref(p.Id)))
		if len(targets) == 0 {
			errs = append(errs, fmt.Errorf("panel %q: no targets", title))
		}
		for i, raw := range targets {
			where := fmt.Sprintf("panel %q target %d", title, i)
			var q prometheus.Dataquery
			if err := strictErr(q.UnmarshalJSONStrict(raw)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			e, err := parse(where, q.Expr)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, e)
		}
	}
	var walk func(raws []json.RawMessage)
	walk = func(raws []json.RawMessage) {
		for _, raw := range raws {
			var head struct {
				Type    string            `json:"type"`
				Panels  []json.RawMessage `json:"panels"`
				Targets []json.RawMessage `json:"targets"`
			}
			if err := json.Unmarshal(raw, &head); err != nil {
				errs = append(errs, err)
				continue
			}
			if head.Type == "row" {
				var r dashboard.RowPanel
				if err := strictErr(r.UnmarshalJSONStrict(raw)); err != nil {
					errs = append(errs, fmt.Errorf("row: %w", err))
				}
				walk(head.Panels)
				continue
			}
			var p dashboard.Panel
			if err := strictErr(p.UnmarshalJSONStrict(raw)); err != nil {
				errs = append(errs, fmt.Errorf("panel: %w", err))
				continue
			}
			panel(&p, head.Targets)
		}
	}
	var top struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, nil, err
	}
	walk(top.Panels)
	for _, v := range d.Templating.List {
		if v.Type != dashboard.VariableTypeQuery {
			continue
		}
		where := fmt.Sprintf("variable %q", v.Name)
		q, err := variableQuery(v.Query)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			errs = append(errs, fmt.Errorf("%s: query %q is not label_values(<selector>, <label>)", where, q))
			continue
		}
		e, err := parse(where, m[1])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, e)
	}
	return &d, out, errors.Join(errs...)
}

// strictErr is err, or nil for the empty cog.BuildErrors the SDK's
// UnmarshalJSONStrict returns (as a non-nil error) when all went well.
func strictErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// variableQuery is a query variable's query: a string, or the object
// Grafana's Prometheus query editor saves ({"query": …}).
func variableQuery(q *dashboard.StringOrMap) (string, error) {
	switch {
	case q == nil:
		return "", errors.New("no query")
	case q.String != nil:
		return *q.String, nil
	}
	s, ok := q.Map["query"].(string)
	if !ok {
		return "", fmt.Errorf("query object without a string query: %v", q.Map)
	}
	return s, nil
}

// ruleExprs loads the rules file strictly with Prometheus's rulefmt (which
// also parses each expression and each annotation template) and parses
// every rule's expression.
func ruleExprs(path string) (*rulefmt.RuleGroups, []expr, error) {
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("load %s: %w", path, errors.Join(errs...))
	}
	var out []expr
	var perrs []error
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Record != "" {
				where = "record " + r.Record
			}
			e, err := parse(where, r.Expr)
			if err != nil {
				perrs = append(perrs, err)
				continue
			}
			out = append(out, e)
		}
	}
	return groups, out, errors.Join(perrs...)
}

// parse parses text with Prometheus's parser after replacing Grafana's
// range variables.
func parse(where, text string) (expr, error) {
	ast, err := promql.ParseExpr(rangeVars.Replace(text))
	if err != nil {
		return expr{}, fmt.Errorf("%s: %q: %w", where, text, err)
	}
	return expr{where: where, text: text, ast: ast}, nil
}

// selectors are the vector selectors of e, each with its metric name.
func selectors(e expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e.ast, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// metricName is the name a selector selects: its name, or an equality
// matcher on __name__; "" when it selects by a pattern.
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// matcher is the matcher of vs on label, or nil.
func matcher(vs *parser.VectorSelector, label string) *labels.Matcher {
	i := slices.IndexFunc(vs.LabelMatchers, func(m *labels.Matcher) bool { return m.Name == label })
	if i < 0 {
		return nil
	}
	return vs.LabelMatchers[i]
}

// unknownMetrics lists, once each and sorted, the metrics that exprs name
// and served (the sample names of a scrape) does not hold, with where each
// was first named; a selector without a fixed name is listed too.
func unknownMetrics(exprs []expr, served map[string]bool) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range exprs {
		for _, vs := range selectors(e) {
			name := metricName(vs)
			key := name + "\x00" + e.where
			switch {
			case name == "":
				out = append(out, fmt.Sprintf("%s: selector %s names no metric", e.where, vs))
			case served[name] || seen[name] || seen[key]:
			default:
				seen[name] = true
				out = append(out, fmt.Sprintf("%s: %s is not served by envoy-bff", e.where, name))
			}
		}
	}
	slices.Sort(out)
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
