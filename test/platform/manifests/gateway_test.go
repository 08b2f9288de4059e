package manifests

import (
	"slices"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/envoy-bff/envoy-bff/authz"
)

// gatewayFiles are the Envoy Gateway sample.
var gatewayFiles = []string{"envoy/gateway/gateway.yaml", "envoy/gateway/routes.yaml", "envoy/gateway/security-policy.yaml", "envoy/gateway/config.yaml"}

// contextExtensionKeys are the context extensions envoy-bff reads
// (authz/request.go; bff.require.<claim> too).
var contextExtensionKeys = []string{"bff.policy", "bff.redirect", "bff.client_token", "bff.frontend", "bff.token", "bff.realtime"}

// policies are envoy-bff's route policies.
var policies = []string{"none", "user", "user_or_none", "client", "user_or_client"}

// TestEnvoyGateway decodes envoy/gateway strictly into the Gateway API and
// Envoy Gateway types and checks the sample end to end: each frontend's host
// is a Gateway listener that admits only its app's namespace; its /bff/
// reaches envoy-bff's browser port with no ext_authz on it; its /api/ route
// is checked by a SecurityPolicy whose gRPC extAuth reaches envoy-bff's gRPC
// port, fails closed with 503, and names the route's policy and frontend in
// contextExtensions; every cross-namespace reference has its ReferenceGrant;
// the envoy-bff config passes `envoy-bff serve --check`.
func TestEnvoyGateway(t *testing.T) {
	t.Parallel()
	objs := load(t, gatewayFiles...)
	bffHost, ports := bffService(t)
	bffName, bffNS, _ := strings.Cut(strings.TrimSuffix(bffHost, ".svc.cluster.local"), ".")

	class := find[*gwapiv1.GatewayClass](t, objs, "")
	if class.Spec.ControllerName != "gateway.envoyproxy.io/gatewayclass-controller" {
		t.Errorf("GatewayClass %s is not Envoy Gateway's: %s", class.Name, class.Spec.ControllerName)
	}
	gw := find[*gwapiv1.Gateway](t, objs, "")
	if string(gw.Spec.GatewayClassName) != class.Name {
		t.Errorf("Gateway %s uses class %s, not %s", gw.Name, gw.Spec.GatewayClassName, class.Name)
	}

	cm := find[*corev1.ConfigMap](t, objs, "")
	if cm.Namespace != bffNS {
		t.Errorf("the ConfigMap is in namespace %q, the pods in %q", cm.Namespace, bffNS)
	}
	raw, frontends := frontendsConfig(t, cm)
	byHost := map[string]sampleFrontend{}
	for _, f := range frontends {
		for _, h := range f.Hosts {
			byHost[h] = f
		}
	}

	grants := all[*gwapiv1.ReferenceGrant](objs)
	granted := func(group, kind, fromNS string) bool {
		for _, g := range grants {
			if g.Namespace != bffNS {
				continue
			}
			from := slices.ContainsFunc(g.Spec.From, func(f gwapiv1.ReferenceGrantFrom) bool {
				return string(f.Group) == group && string(f.Kind) == kind && string(f.Namespace) == fromNS
			})
			to := slices.ContainsFunc(g.Spec.To, func(to gwapiv1.ReferenceGrantTo) bool {
				return to.Group == "" && to.Kind == "Service" && (to.Name == nil || string(*to.Name) == bffName)
			})
			if from && to {
				return true
			}
		}
		return false
	}
	// toBFF says whether a backend reference names envoy-bff's Service on
	// port, with the grant a reference from another namespace needs.
	toBFF := func(ref gwapiv1.BackendObjectReference, fromNS, group, kind string, port uint32) bool {
		ns := fromNS
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		if string(ref.Name) != bffName || ns != bffNS || ref.Port == nil || uint32(*ref.Port) != port ||
			(ref.Kind != nil && *ref.Kind != "Service") || (ref.Group != nil && *ref.Group != "") {
			return false
		}
		if ns != fromNS && !granted(group, kind, fromNS) {
			t.Errorf("no ReferenceGrant in %s lets a %s in %s name Service %s", bffNS, kind, fromNS, bffName)
		}
		return true
	}

	secPolicies := all[*egv1a1.SecurityPolicy](objs)
	policyOf := func(r *gwapiv1.HTTPRoute) *egv1a1.SecurityPolicy {
		for _, p := range secPolicies {
			if p.Namespace != r.Namespace {
				continue
			}
			for _, ref := range p.Spec.TargetRefs {
				if ref.Group == gwapiv1.GroupName && ref.Kind == "HTTPRoute" && string(ref.Name) == r.Name {
					return p
				}
			}
		}
		return nil
	}

	seen := map[string][]string{} // frontend host → the prefixes routed for it
	for _, r := range all[*gwapiv1.HTTPRoute](objs) {
		// Attached to the Gateway through the listener of its hosts, which
		// admits the route's namespace.
		for _, pr := range r.Spec.ParentRefs {
			if string(pr.Name) != gw.Name || pr.Namespace == nil || string(*pr.Namespace) != gw.Namespace || pr.SectionName == nil {
				t.Errorf("route %s/%s: parent %+v is not a listener of Gateway %s/%s", r.Namespace, r.Name, pr, gw.Namespace, gw.Name)
				continue
			}
			i := slices.IndexFunc(gw.Spec.Listeners, func(l gwapiv1.Listener) bool { return l.Name == *pr.SectionName })
			if i < 0 {
				t.Errorf("route %s/%s: Gateway %s has no listener %s", r.Namespace, r.Name, gw.Name, *pr.SectionName)
				continue
			}
			l := gw.Spec.Listeners[i]
			if l.Hostname == nil || !slices.Equal(r.Spec.Hostnames, []gwapiv1.Hostname{*l.Hostname}) {
				t.Errorf("route %s/%s serves %v on listener %s for %v", r.Namespace, r.Name, r.Spec.Hostnames, l.Name, l.Hostname)
			}
			ar := l.AllowedRoutes
			if ar == nil || ar.Namespaces == nil || ar.Namespaces.From == nil || *ar.Namespaces.From != gwapiv1.NamespacesFromSelector ||
				ar.Namespaces.Selector == nil || ar.Namespaces.Selector.MatchLabels["kubernetes.io/metadata.name"] != r.Namespace {
				t.Errorf("listener %s does not admit exactly namespace %s's routes", l.Name, r.Namespace)
			}
		}
		pol := policyOf(r)
		for _, rule := range r.Spec.Rules {
			prefix := ""
			for _, m := range rule.Matches {
				if m.Path != nil && m.Path.Type != nil && *m.Path.Type == gwapiv1.PathMatchPathPrefix && m.Path.Value != nil {
					prefix = *m.Path.Value
				}
			}
			for _, h := range r.Spec.Hostnames {
				f, ok := byHost[string(h)]
				if !ok {
					t.Errorf("route %s/%s serves %s, which no frontend lists", r.Namespace, r.Name, h)
					continue
				}
				seen[string(h)] = append(seen[string(h)], prefix)
				switch prefix {
				case f.prefix() + "bff/":
					if len(rule.BackendRefs) != 1 || !toBFF(rule.BackendRefs[0].BackendObjectReference, r.Namespace, gwapiv1.GroupName, "HTTPRoute", ports["http"]) {
						t.Errorf("%s%s does not reach envoy-bff's browser port %s:%d", h, prefix, bffHost, ports["http"])
					}
					if pol != nil {
						t.Errorf("SecurityPolicy %s checks %s%s: the login must work anonymously", pol.Name, h, prefix)
					}
				case f.prefix() + "api/":
					if pol == nil {
						t.Errorf("%s%s: no SecurityPolicy has envoy-bff check route %s/%s", h, prefix, r.Namespace, r.Name)
						continue
					}
					checkExtAuth(t, pol, f.Name, func(ref gwapiv1.BackendObjectReference) bool {
						return toBFF(ref, pol.Namespace, egv1a1.GroupName, egv1a1.KindSecurityPolicy, ports["grpc"])
					})
				}
			}
		}
	}
	for _, f := range frontends {
		for _, h := range f.Hosts {
			for _, want := range []string{f.prefix() + "bff/", f.prefix() + "api/"} {
				if !slices.Contains(seen[h], want) {
					t.Errorf("frontend %s: %s%s is not routed", f.Name, h, want)
				}
			}
		}
	}
	checkFrontendsConfig(t, raw, frontends, find[*corev1.Secret](t, objs, ""))
}

// checkExtAuth: gRPC ext_authz to envoy-bff (reaches tells), fail closed
// with 503, a timeout with room for a token refresh, and context extensions
// naming a policy and the route's frontend, each one envoy-bff reads; only
// the headers Check reads are sent.
func checkExtAuth(t *testing.T, pol *egv1a1.SecurityPolicy, frontend string, reaches func(gwapiv1.BackendObjectReference) bool) {
	t.Helper()
	ea := pol.Spec.ExtAuth
	if ea == nil || ea.GRPC == nil || ea.HTTP != nil {
		t.Errorf("SecurityPolicy %s has no gRPC extAuth", pol.Name)
		return
	}
	if len(ea.GRPC.BackendRefs) != 1 || !reaches(ea.GRPC.BackendRefs[0].BackendObjectReference) {
		t.Errorf("SecurityPolicy %s's extAuth does not reach envoy-bff's gRPC port: %+v", pol.Name, ea.GRPC.BackendRefs)
	}
	if ea.FailOpen == nil || *ea.FailOpen || ea.StatusOnError == nil || *ea.StatusOnError != 503 {
		t.Errorf("SecurityPolicy %s must fail closed with 503 (failOpen %v, statusOnError %v)", pol.Name, ea.FailOpen, ea.StatusOnError)
	}
	// The sample's config keeps the default anti-forgery header.
	if want := authz.RequestHeaders("X-CSRF"); !slices.Equal(ea.HeadersToExtAuth, want) {
		t.Errorf("SecurityPolicy %s sends headers %v to Check, want exactly what it reads: %v", pol.Name, ea.HeadersToExtAuth, want)
	}
	if d, err := time.ParseDuration(string(ptrOr(ea.Timeout))); err != nil || d < time.Second {
		t.Errorf("SecurityPolicy %s: timeout %v leaves no room for a token refresh", pol.Name, ea.Timeout)
	}
	ext := map[string]string{}
	for _, e := range ea.ContextExtensions {
		if e.Type != egv1a1.ContextExtensionValueTypeValue || e.Value == nil {
			t.Errorf("SecurityPolicy %s: context extension %s has no literal value", pol.Name, e.Name)
			continue
		}
		if !slices.Contains(contextExtensionKeys, e.Name) && !strings.HasPrefix(e.Name, "bff.require.") {
			t.Errorf("SecurityPolicy %s: envoy-bff reads no context extension %s", pol.Name, e.Name)
		}
		ext[e.Name] = *e.Value
	}
	if !slices.Contains(policies, ext["bff.policy"]) {
		t.Errorf("SecurityPolicy %s: bff.policy %q is not one of %v", pol.Name, ext["bff.policy"], policies)
	}
	if ext["bff.frontend"] != frontend {
		t.Errorf("SecurityPolicy %s: bff.frontend %q, want %s (the frontend of the route's host)", pol.Name, ext["bff.frontend"], frontend)
	}
}

// ptrOr is *p, or the zero value for nil.
func ptrOr[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
