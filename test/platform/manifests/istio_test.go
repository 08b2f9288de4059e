package manifests

import (
	"maps"
	"slices"
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	istionetworkingapi "istio.io/api/networking/v1"
	istionetworkingapiv1alpha3 "istio.io/api/networking/v1alpha3"
	istiosecurityapi "istio.io/api/security/v1beta1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istionetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/envoy-bff/envoy-bff/authz"
)

// bffService is envoy-bff's Service: its cluster host name and port by name.
func bffService(t *testing.T) (string, map[string]uint32) {
	t.Helper()
	svc := find[*corev1.Service](t, load(t, k8sFiles[0]), "envoy-bff")
	ports := map[string]uint32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = uint32(p.Port)
	}
	return svc.Name + "." + svc.Namespace + ".svc.cluster.local", ports
}

// meshProvider is the envoy-bff extension provider of mesh-config.yaml.
func meshProvider(t *testing.T) *istioOperator {
	t.Helper()
	return find[*istioOperator](t, load(t, "envoy/istio/mesh-config.yaml"), "")
}

// routesByPrefix maps a virtual service's URI prefixes to their routes.
func routesByPrefix(vs *istionetworking.VirtualService) map[string]*istionetworkingapi.HTTPRoute {
	out := map[string]*istionetworkingapi.HTTPRoute{}
	for _, r := range vs.Spec.GetHttp() {
		prefix := ""
		if m := r.GetMatch(); len(m) > 0 {
			prefix = m[0].GetUri().GetPrefix()
		}
		out[prefix] = r
	}
	return out
}

// reaches says whether the route sends everything to host:port.
func reaches(r *istionetworkingapi.HTTPRoute, host string, port uint32) bool {
	d := r.GetRoute()
	return len(d) == 1 && d[0].GetDestination().GetHost() == host && d[0].GetDestination().GetPort().GetNumber() == port
}

// checkCustomPolicy: CUSTOM through the mesh's envoy-bff provider, on the
// gateway's workload, with no hosts in its rules (a host spelt otherwise —
// a port, upper case — would skip the check); its paths.
func checkCustomPolicy(t *testing.T, pol *istiosecurity.AuthorizationPolicy, gw *istionetworking.Gateway, provider string) []string {
	t.Helper()
	if pol.Spec.GetAction() != istiosecurityapi.AuthorizationPolicy_CUSTOM || pol.Spec.GetProvider().GetName() != provider {
		t.Errorf("authorization policy %s does not use the mesh's provider %s: %v %v", pol.Name, provider, pol.Spec.GetAction(), pol.Spec.GetProvider())
	}
	for k, v := range gw.Spec.GetSelector() {
		if pol.Spec.GetSelector().GetMatchLabels()[k] != v {
			t.Errorf("policy %s does not select gateway %s's workload (%s=%s)", pol.Name, gw.Name, k, v)
		}
	}
	var paths []string
	for _, r := range pol.Spec.GetRules() {
		for _, to := range r.GetTo() {
			op := to.GetOperation()
			if len(op.GetHosts()) > 0 || len(op.GetNotHosts()) > 0 {
				t.Errorf("the CUSTOM rule names hosts %v %v: a host spelt otherwise would skip the check", op.GetHosts(), op.GetNotHosts())
			}
			paths = append(paths, op.GetPaths()...)
		}
	}
	return paths
}

// TestIstioManifests decodes the mesh provider, the gateway, its routes,
// the CUSTOM policy and the destination rule strictly into Istio's types
// and checks them against the envoy-bff Service.
func TestIstioManifests(t *testing.T) {
	t.Parallel()
	host, ports := bffService(t)

	mesh := meshProvider(t)
	provs := mesh.MeshConfig.GetExtensionProviders()
	if len(provs) != 1 {
		t.Fatalf("%d extension providers, want envoy-bff's", len(provs))
	}
	grpc := provs[0].GetEnvoyExtAuthzGrpc()
	if grpc.GetService() != host || grpc.GetPort() != ports["grpc"] {
		t.Errorf("extension provider points at %s:%d, want %s:%d", grpc.GetService(), grpc.GetPort(), host, ports["grpc"])
	}
	if grpc.GetFailOpen() || grpc.GetStatusOnError() != "503" || grpc.GetTimeout().AsDuration().Seconds() < 1 {
		t.Errorf("the provider must fail closed with 503 and leave room for a refresh: %v", grpc)
	}

	ing := load(t, "envoy/istio/ingress.yaml")
	gw := find[*istionetworking.Gateway](t, ing, "")
	paths := checkCustomPolicy(t, find[*istiosecurity.AuthorizationPolicy](t, ing, ""), gw, provs[0].GetName())
	if !slices.Contains(paths, "/api/*") {
		t.Errorf("the policy does not cover /api/* (%v)", paths)
	}
	vs := find[*istionetworking.VirtualService](t, ing, "")
	routes := routesByPrefix(vs)
	if r := routes["/bff/"]; r == nil || !reaches(r, host, ports["http"]) {
		t.Errorf("/bff/ does not reach envoy-bff's browser port %s:%d", host, ports["http"])
	}
	if routes["/api/"] == nil {
		t.Error("/api/ is not routed")
	}
	if !slices.Contains(vs.Spec.GetGateways(), gw.Name) {
		t.Error("the virtual service is not bound to the gateway")
	}
	for _, s := range gw.Spec.GetServers() {
		for _, h := range s.GetHosts() {
			if !slices.Contains(vs.Spec.GetHosts(), h) {
				t.Errorf("the gateway serves %s, which the virtual service does not route", h)
			}
		}
	}

	// A killed pod is ejected at once (T80), whatever the provider cannot retry.
	dr := find[*istionetworking.DestinationRule](t, load(t, "envoy/istio/destination-rule.yaml"), "")
	od := dr.Spec.GetTrafficPolicy().GetOutlierDetection()
	if dr.Spec.GetHost() != host || od.GetConsecutiveLocalOriginFailures().GetValue() != 1 || !od.GetSplitExternalLocalOriginErrors() {
		t.Errorf("destination rule for %s: outlier detection %v", dr.Spec.GetHost(), od)
	}
	if od.GetMaxEjectionPercent() > 50 {
		t.Errorf("outlier detection may eject %d%% of the pods: a fault on the gateway's side could empty the service", od.GetMaxEjectionPercent())
	}
}

// TestIstioFrontends checks envoy/istio/frontends.yaml: two apps on two
// hosts through Istio's CUSTOM action, which sends no context extensions, so
// envoy-bff must select each frontend by host. The gateway, the virtual
// services and envoy-bff's frontends name the same hosts; every host's /bff/
// reaches envoy-bff and its /api/ is checked; the envoy-bff config in the
// ConfigMap, with the Deployment's environment changed as the file's comment
// says, passes `envoy-bff serve --check`, and unchanged it does not.
func TestIstioFrontends(t *testing.T) {
	t.Parallel()
	objs := load(t, "envoy/istio/frontends.yaml")
	host, ports := bffService(t)
	cm := find[*corev1.ConfigMap](t, objs, "")
	if cm.Namespace != "envoy-bff" {
		t.Errorf("the ConfigMap is in namespace %q, the pods in envoy-bff", cm.Namespace)
	}
	raw, frontends := frontendsConfig(t, cm)
	byHost := map[string]sampleFrontend{}
	for _, f := range frontends {
		for _, h := range f.Hosts {
			byHost[h] = f
		}
	}

	gw := find[*istionetworking.Gateway](t, objs, "")
	gwHosts := map[string]bool{}
	for _, s := range gw.Spec.GetServers() {
		for _, h := range s.GetHosts() {
			gwHosts[h] = true
		}
	}
	paths := checkCustomPolicy(t, find[*istiosecurity.AuthorizationPolicy](t, objs, ""), gw, meshProvider(t).MeshConfig.GetExtensionProviders()[0].GetName())
	vsHosts := map[string]bool{}
	for _, vs := range all[*istionetworking.VirtualService](objs) {
		if !slices.Contains(vs.Spec.GetGateways(), gw.Name) {
			t.Errorf("virtual service %s is not bound to gateway %s", vs.Name, gw.Name)
		}
		routes := routesByPrefix(vs)
		for _, h := range vs.Spec.GetHosts() {
			vsHosts[h] = true
			f, ok := byHost[h]
			if !ok {
				t.Errorf("virtual service %s serves %s, which no frontend lists", vs.Name, h)
				continue
			}
			if r := routes[f.prefix()+"bff/"]; r == nil || !reaches(r, host, ports["http"]) {
				t.Errorf("%s%sbff/ does not reach envoy-bff's browser port (%s:%d)", h, f.prefix(), host, ports["http"])
			}
			if routes[f.prefix()+"api/"] == nil || !slices.Contains(paths, f.prefix()+"api/*") {
				t.Errorf("%s%sapi/ is not routed, or not checked by the CUSTOM policy (paths %v)", h, f.prefix(), paths)
			}
		}
	}
	for _, h := range slices.Sorted(maps.Keys(byHost)) {
		if !gwHosts[h] || !vsHosts[h] {
			t.Errorf("frontend host %s: gateway %v, virtual service %v", h, gwHosts[h], vsHosts[h])
		}
	}
	for h := range gwHosts {
		if _, ok := byHost[h]; !ok {
			t.Errorf("the gateway serves %s, which no frontend lists", h)
		}
	}
	checkFrontendsConfig(t, raw, frontends, find[*corev1.Secret](t, objs, ""))
}

// TestIstioCheckHeaders: the EnvoyFilter sample merges into the ingress
// gateway's ext_authz filter (Istio's gRPC provider cannot narrow the
// headers itself) an allowed_headers Envoy accepts, listing exactly the
// headers Check reads.
func TestIstioCheckHeaders(t *testing.T) {
	t.Parallel()
	ef := find[*istionetworkingv1alpha3.EnvoyFilter](t, load(t, "envoy/istio/ext-authz-headers.yaml"), "")
	if got := ef.Spec.GetWorkloadSelector().GetLabels(); got["istio"] != "ingressgateway" {
		t.Errorf("the EnvoyFilter selects %v, not the ingress gateway", got)
	}
	patches := ef.Spec.GetConfigPatches()
	if len(patches) != 1 {
		t.Fatalf("%d patches, want 1", len(patches))
	}
	p := patches[0]
	sub := p.GetMatch().GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName()
	if p.GetApplyTo() != istionetworkingapiv1alpha3.EnvoyFilter_HTTP_FILTER || p.GetPatch().GetOperation() != istionetworkingapiv1alpha3.EnvoyFilter_Patch_MERGE ||
		sub != "envoy.filters.http.ext_authz" || p.GetMatch().GetContext() != istionetworkingapiv1alpha3.EnvoyFilter_GATEWAY {
		t.Errorf("the patch must MERGE into the gateway's envoy.filters.http.ext_authz: %v", p)
	}
	raw, err := protojson.Marshal(p.GetPatch().GetValue())
	if err != nil {
		t.Fatal(err)
	}
	var filter hcmv3.HttpFilter
	if err := protojson.Unmarshal(raw, &filter); err != nil {
		t.Fatalf("the patch is not an HTTP filter Envoy accepts: %v", err)
	}
	var ea extauthzv3.ExtAuthz
	if err := filter.GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatalf("the patch's typed_config is not ext_authz's: %v", err)
	}
	if err := ea.ValidateAll(); err != nil {
		t.Errorf("Envoy would refuse the merged fields: %v", err)
	}
	var listed []string
	for _, m := range ea.GetAllowedHeaders().GetPatterns() {
		listed = append(listed, m.GetExact())
	}
	if want := authz.RequestHeaders("X-CSRF"); !slices.Equal(listed, want) {
		t.Errorf("the EnvoyFilter sends %v to Check, want exactly what it reads: %v", listed, want)
	}
}
