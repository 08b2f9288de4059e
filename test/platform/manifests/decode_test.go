package manifests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istionetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// root is the repository's top level.
const root = "../../.."

// deserializer decodes Kubernetes, Gateway API and Envoy Gateway objects
// into their Go types, strictly: an unknown or duplicate field is an error.
var deserializer = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		gwapiv1.Install, egv1a1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// named is what every decoded object is: a Kubernetes object with a name.
type named interface{ GetName() string }

// istioOperator is envoy/istio/mesh-config.yaml: the IstioOperator's Go
// type is not in istio.io/api or istio.io/client-go (it lives in the istio
// module itself), so its envelope is this strict struct and its
// spec.meshConfig the real istio.io/api MeshConfig.
type istioOperator struct {
	metav1.TypeMeta
	MeshConfig *meshv1alpha1.MeshConfig
}

func (*istioOperator) GetName() string { return "" }

// readDocs splits a YAML file into its documents, dropping empty ones.
func readDocs(file string) ([][]byte, error) {
	raw, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return nil, err
	}
	return splitDocs(file, raw)
}

// splitDocs splits YAML into its documents, dropping empty ones.
func splitDocs(file string, raw []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if j, err := yaml.YAMLToJSON(d); err == nil && string(j) != "null" {
			out = append(out, d)
		}
	}
}

// decode turns one YAML document into its typed object, strictly.
func decode(d []byte) (named, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(d, &tm); err != nil {
		return nil, err
	}
	group, _, _ := strings.Cut(tm.APIVersion, "/")
	if !strings.HasSuffix(group, "istio.io") {
		obj, _, err := deserializer.Decode(d, nil, nil)
		if err != nil {
			return nil, err
		}
		n, ok := obj.(named)
		if !ok {
			return nil, fmt.Errorf("%s %s has no name", tm.APIVersion, tm.Kind)
		}
		return n, nil
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "networking.istio.io/v1 Gateway":
		o := &istionetworking.Gateway{TypeMeta: tm}
		return o, decodeIstio(d, &o.ObjectMeta, &o.Spec)
	case "networking.istio.io/v1 VirtualService":
		o := &istionetworking.VirtualService{TypeMeta: tm}
		return o, decodeIstio(d, &o.ObjectMeta, &o.Spec)
	case "networking.istio.io/v1 DestinationRule":
		o := &istionetworking.DestinationRule{TypeMeta: tm}
		return o, decodeIstio(d, &o.ObjectMeta, &o.Spec)
	case "security.istio.io/v1 AuthorizationPolicy":
		o := &istiosecurity.AuthorizationPolicy{TypeMeta: tm}
		return o, decodeIstio(d, &o.ObjectMeta, &o.Spec)
	case "networking.istio.io/v1alpha3 EnvoyFilter":
		o := &istionetworkingv1alpha3.EnvoyFilter{TypeMeta: tm}
		return o, decodeIstio(d, &o.ObjectMeta, &o.Spec)
	case "install.istio.io/v1alpha1 IstioOperator":
		return decodeIstioOperator(d, tm)
	}
	return nil, fmt.Errorf("no Go type for %s %s", tm.APIVersion, tm.Kind)
}

// decodeIstio decodes an Istio object's metadata strictly and its spec with
// protojson, which refuses unknown fields. (The specs' own UnmarshalJSON,
// which sigs.k8s.io/yaml or a scheme would call, is golang/protobuf's jsonpb
// with AllowUnknownFields: a misspelled field would pass.)
func decodeIstio(d []byte, meta *metav1.ObjectMeta, spec proto.Message) error {
	var env struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              json.RawMessage `json:"spec"`
	}
	if err := strictJSON(d, &env); err != nil {
		return err
	}
	*meta = env.ObjectMeta
	if err := protojson.Unmarshal(env.Spec, spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	return nil
}

func decodeIstioOperator(d []byte, tm metav1.TypeMeta) (named, error) {
	var env struct {
		metav1.TypeMeta `json:",inline"`
		Spec            struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		} `json:"spec"`
	}
	if err := strictJSON(d, &env); err != nil {
		return nil, err
	}
	o := &istioOperator{TypeMeta: tm, MeshConfig: &meshv1alpha1.MeshConfig{}}
	if err := protojson.Unmarshal(env.Spec.MeshConfig, o.MeshConfig); err != nil {
		return nil, fmt.Errorf("spec.meshConfig: %w", err)
	}
	return o, nil
}

// strictJSON decodes YAML into v as the API server would in strict mode:
// field names match case-sensitively (encoding/json would take
// "meshconfig" for meshConfig), unknown and duplicate fields are errors.
func strictJSON(d []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(d)
	if err != nil {
		return err
	}
	strict, err := k8sjson.UnmarshalStrict(j, v, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// load decodes every document of the files, failing the test on the first
// that does not decode strictly.
func load(t *testing.T, files ...string) []named {
	t.Helper()
	var out []named
	for _, f := range files {
		docs, err := readDocs(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range docs {
			o, err := decode(d)
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
			out = append(out, o)
		}
	}
	return out
}

// find is the object of type T named name ("" for the first of its type).
func find[T named](t *testing.T, objs []named, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.(T); ok && (name == "" || v.GetName() == name) {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %q", zero, name)
	return zero
}

// all is every object of type T.
func all[T named](objs []named) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// serveCheck runs `envoy-bff serve --check` with env alone as its
// environment and args after it (e.g. --config FILE).
func serveCheck(t *testing.T, env map[string]string, args ...string) ([]byte, error) {
	t.Helper()
	bin := os.Getenv("ENVOY_BFF_BIN")
	if bin == "" {
		t.Fatal("ENVOY_BFF_BIN is not set: run through make test (make build makes bin/envoy-bff)")
	}
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"serve", "--check"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd.CombinedOutput()
}
