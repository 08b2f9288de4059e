package helm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart, from this package's directory.
const chartDir = "../../../envoy/helm/envoy-bff"

const (
	releaseName = "edge"
	namespace   = "gateway"
)

// scheme knows every kind the chart may render; anything else is an error.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// release is one rendering of the chart: its objects, decoded strictly, and
// its NOTES.txt.
type release struct {
	objects []runtime.Object
	notes   string
}

// renderChart renders the chart as `helm install` would with vals given by
// the user (schema validation included), or returns Helm's error.
func renderChart(vals map[string]any) (map[string]string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	opts := common.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	top, err := util.ToRenderValuesWithSchemaValidation(ch, vals, opts, common.DefaultCapabilities, false)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, top)
}

// render renders vals and decodes every object strictly; any error fails t.
func render(t *testing.T, vals map[string]any) release {
	t.Helper()
	files, err := renderChart(vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var r release
	for _, name := range names {
		switch path.Ext(name) {
		case ".txt":
			r.notes += files[name]
			continue
		case ".tpl":
			continue
		}
		objs, err := decodeStrict([]byte(files[name]))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, files[name])
		}
		r.objects = append(r.objects, objs...)
	}
	if len(r.objects) == 0 {
		t.Fatal("the chart rendered no objects")
	}
	return r
}

// decodeStrict decodes each YAML document of a rendered file into the Go
// type of its apiVersion and kind: a field the type does not have, or one
// given twice, is an error, and so is a kind the chart should not render.
func decodeStrict(raw []byte) ([]runtime.Object, error) {
	rd := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out []runtime.Object
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, err
		}
		if tm.APIVersion == "" && tm.Kind == "" {
			var any map[string]any
			if err := yaml.Unmarshal(doc, &any); err != nil || len(any) > 0 {
				return nil, fmt.Errorf("a document without apiVersion and kind: %q", doc)
			}
			continue // empty document (a disabled template)
		}
		gvk := tm.GroupVersionKind()
		obj, err := scheme.New(gvk)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", gvk, err)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", gvk.Kind, err)
		}
		out = append(out, obj)
	}
}

// only returns the one object of type T named name ("" any name).
func only[T runtime.Object](t *testing.T, r release, name string) T {
	t.Helper()
	var found []T
	for _, o := range r.objects {
		if v, ok := o.(T); ok && (name == "" || o.(metav1.Object).GetName() == name) {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T named %q, want 1", len(found), zero, name)
	}
	return found[0]
}

// all returns the objects of type T.
func all[T runtime.Object](r release) []T {
	var found []T
	for _, o := range r.objects {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	return found
}

// TestStrictDecodingRejectsMisspelledFields proves the decoder above fails
// on what a typo in a template would render, so a green test means the
// rendered fields exist in the real types.
func TestStrictDecodingRejectsMisspelledFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, doc string }{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"},
		{"misspelled probe field", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: c\n    readinessProbe: {periodSecond: 5}\n"},
		{"duplicate field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n"},
		{"unknown kind", "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n"},
		{"misspelled ServiceMonitor field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  endpoints: [{port: admin, pathh: /metrics}]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := decodeStrict([]byte(tc.doc)); err == nil {
				t.Errorf("decoded without error:\n%s", tc.doc)
			}
		})
	}
	if _, err := decodeStrict([]byte("---\n# nothing\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")); err != nil {
		t.Errorf("a valid stream with an empty document: %v", err)
	}
}

// keys lists a map's keys, sorted, for messages.
func keys[V any](m map[string]V) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
