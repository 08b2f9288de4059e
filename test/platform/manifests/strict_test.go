package manifests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMisspelledFieldsFail: a misspelled field in any sample fails to
// decode, at the top of a spec and deep inside one, for every family of
// types: Kubernetes, Istio (whose specs decode with protojson), the
// IstioOperator envelope, the Gateway API and Envoy Gateway.
func TestMisspelledFieldsFail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, file, from, to string }{
		{"k8s container port", "envoy/k8s/envoy-bff.yaml", "containerPort: 9001", "containerPrt: 9001"},
		{"k8s probe", "envoy/k8s/envoy-bff.yaml", "readinessProbe:", "readynessProbe:"},
		{"k8s statefulset", "envoy/k8s/redis.yaml", "serviceName: redis", "servicename: redis"},
		{"k8s field case", "envoy/k8s/envoy-bff.yaml", "runAsNonRoot: true", "runasnonroot: true"},
		{"istio field case", "envoy/istio/mesh-config.yaml", "statusOnError:", "statusonerror:"},
		{"k8s metadata", "envoy/k8s/redis.yaml", "namespace: envoy-bff", "namspace: envoy-bff"},
		{"istio outlier detection", "envoy/istio/destination-rule.yaml", "consecutiveLocalOriginFailures", "consecutiveLocalOriginFailure"},
		{"istio policy action", "envoy/istio/ingress.yaml", "action: CUSTOM", "actoin: CUSTOM"},
		{"istio metadata", "envoy/istio/ingress.yaml", "namespace: istio-system", "namespce: istio-system"},
		{"istio virtual service", "envoy/istio/frontends.yaml", "gateways:", "gateway:"},
		{"istio enum value", "envoy/istio/ingress.yaml", "action: CUSTOM", "action: CUSTOMISED"},
		{"mesh provider", "envoy/istio/mesh-config.yaml", "failOpen: false", "failOpn: false"},
		{"istio operator envelope", "envoy/istio/mesh-config.yaml", "meshConfig:", "meshconfig:"},
		{"gateway listener", "envoy/gateway/gateway.yaml", "allowedRoutes:", "allowRoutes:"},
		{"httproute parent", "envoy/gateway/routes.yaml", "sectionName: https-shop", "section: https-shop"},
		{"reference grant", "envoy/gateway/routes.yaml", "  from:\n", "  form:\n"},
		{"security policy extensions", "envoy/gateway/security-policy.yaml", "contextExtensions:", "contextExtension:"},
		{"security policy retry", "envoy/gateway/security-policy.yaml", "numRetries: 2", "retries: 2"},
		{"configmap", "envoy/gateway/config.yaml", "\ndata:", "\ndatas:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join(root, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(raw, []byte(tc.from)) {
				t.Fatalf("%s no longer holds %q: pick another field to break", tc.file, tc.from)
			}
			docs, err := splitDocs(tc.file, bytes.Replace(raw, []byte(tc.from), []byte(tc.to), 1))
			if err != nil {
				t.Fatal(err)
			}
			var errs []string
			for _, d := range docs {
				if _, err := decode(d); err != nil {
					errs = append(errs, err.Error())
				}
			}
			if len(errs) == 0 {
				t.Fatalf("%s with %q spelt %q decoded without error", tc.file, tc.from, tc.to)
			}
			t.Logf("refused: %s", strings.Join(errs, "; "))
		})
	}
}
