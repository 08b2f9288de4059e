package deploy

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// sampleFrontend is what the Istio sample's envoy-bff config says of one app.
type sampleFrontend struct {
	Name       string   `yaml:"name"`
	Hosts      []string `yaml:"hosts"`
	PathPrefix string   `yaml:"path_prefix"`
	OIDC       struct {
		RedirectURL           string `yaml:"redirect_url"`
		PostLogoutRedirectURL string `yaml:"post_logout_redirect_url"`
	} `yaml:"oidc"`
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
	docs := readManifests(t, "envoy/istio/frontends.yaml")
	k8s := readManifests(t, "envoy/k8s/envoy-bff.yaml")
	svc := find(t, k8s, "Service", "envoy-bff")
	bffHost := svc.str("metadata.name") + "." + svc.str("metadata.namespace") + ".svc.cluster.local"
	var httpPort any
	for _, p := range svc.list("spec.ports") {
		if pm := asDoc(p); pm.str("name") == "http" {
			httpPort = pm["port"]
		}
	}

	cm := find(t, docs, "ConfigMap", "")
	if cm.str("metadata.namespace") != svc.str("metadata.namespace") {
		t.Errorf("the ConfigMap is in namespace %q, the pods in %q", cm.str("metadata.namespace"), svc.str("metadata.namespace"))
	}
	raw, _ := cm.obj("data")["envoy-bff.yaml"].(string)
	var cfg struct {
		Frontends []sampleFrontend `yaml:"frontends"`
	}
	if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil || len(cfg.Frontends) < 2 {
		t.Fatalf("the ConfigMap's envoy-bff.yaml holds %d frontends (%v); the sample shows two", len(cfg.Frontends), err)
	}

	// Every frontend's host is a gateway host with a virtual service, and
	// no gateway or virtual service host is left without a frontend.
	frontendHosts := map[string]sampleFrontend{}
	for _, f := range cfg.Frontends {
		if len(f.Hosts) == 0 {
			t.Errorf("frontend %s has no hosts: behind Istio only the host tells envoy-bff which app a request is for", f.Name)
		}
		prefix := f.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		for _, h := range f.Hosts {
			frontendHosts[h] = f
		}
		for _, u := range []string{f.OIDC.RedirectURL, f.OIDC.PostLogoutRedirectURL} {
			if pu := mustURL(t, u); pu.Scheme != "https" || !slices.Contains(f.Hosts, pu.Hostname()) {
				t.Errorf("frontend %s: %s is not on its own hosts %v over https", f.Name, u, f.Hosts)
			}
		}
		if pu := mustURL(t, f.OIDC.RedirectURL); pu.Path != prefix+"bff/callback" {
			t.Errorf("frontend %s: redirect_url path %s, want %sbff/callback", f.Name, pu.Path, prefix)
		}
	}
	gw := find(t, docs, "Gateway", "")
	gwHosts := map[string]bool{}
	for _, s := range gw.list("spec.servers") {
		for _, h := range toStrings(asDoc(s).get("hosts")) {
			gwHosts[h] = true
		}
	}
	vsHosts := map[string]bool{}
	pol := find(t, docs, "AuthorizationPolicy", "")
	policyPaths := toStrings(pol.get("spec.rules.0.to.0.operation.paths"))
	for _, vs := range docs {
		if vs.str("kind") != "VirtualService" {
			continue
		}
		if !slices.Contains(toStrings(vs.get("spec.gateways")), gw.str("metadata.name")) {
			t.Errorf("virtual service %s is not bound to gateway %s", vs.str("metadata.name"), gw.str("metadata.name"))
		}
		for _, h := range toStrings(vs.get("spec.hosts")) {
			vsHosts[h] = true
			f, ok := frontendHosts[h]
			if !ok {
				t.Errorf("virtual service %s serves %s, which no frontend lists", vs.str("metadata.name"), h)
				continue
			}
			prefix := f.PathPrefix
			if prefix == "" {
				prefix = "/"
			}
			routes := map[string]doc{}
			for _, r := range vs.list("spec.http") {
				routes[asDoc(r).str("match.0.uri.prefix")] = asDoc(r)
			}
			bff := routes[prefix+"bff/"]
			if bff.str("route.0.destination.host") != bffHost || bff.get("route.0.destination.port.number") != httpPort {
				t.Errorf("%s%sbff/ does not reach envoy-bff's browser port (%s:%v): %v", h, prefix, bffHost, httpPort, bff.get("route"))
			}
			if _, ok := routes[prefix+"api/"]; !ok || !slices.Contains(policyPaths, prefix+"api/*") {
				t.Errorf("%s%sapi/ is not routed, or not checked by the CUSTOM policy (paths %v)", h, prefix, policyPaths)
			}
		}
	}
	for h := range frontendHosts {
		if !gwHosts[h] || !vsHosts[h] {
			t.Errorf("frontend host %s: gateway %v, virtual service %v", h, gwHosts[h], vsHosts[h])
		}
	}
	for h := range gwHosts {
		if _, ok := frontendHosts[h]; !ok {
			t.Errorf("the gateway serves %s, which no frontend lists", h)
		}
	}

	// CUSTOM on the gateway, through the mesh's envoy-bff provider; no hosts
	// in the rule, so no spelling of a host can skip the check.
	mesh := readManifests(t, "envoy/istio/mesh-config.yaml")[0]
	if pol.str("spec.action") != "CUSTOM" || pol.str("spec.provider.name") != mesh.str("spec.meshConfig.extensionProviders.0.name") {
		t.Errorf("authorization policy %v does not use the mesh's envoy-bff provider", pol.get("spec"))
	}
	for k, v := range gw.obj("spec.selector") {
		if pol.obj("spec.selector.matchLabels")[k] != v {
			t.Errorf("the policy does not select the gateway's workload (%s=%v)", k, v)
		}
	}
	for _, r := range pol.list("spec.rules") {
		for _, to := range asDoc(r).list("to") {
			if op := asDoc(to).obj("operation"); op["hosts"] != nil || op["notHosts"] != nil {
				t.Errorf("the CUSTOM rule names hosts %v: a host spelt otherwise would skip the check", op)
			}
		}
	}

	// The Secret holds exactly each frontend's client secret, under its
	// ENVOY_BFF_FRONTENDS_<NAME>_ variable.
	secret := find(t, docs, "Secret", "")
	var want, got []string
	for _, f := range cfg.Frontends {
		want = append(want, "ENVOY_BFF_FRONTENDS_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))+"_OIDC_CLIENT_SECRET")
	}
	got = slices.Collect(maps.Keys(secret.obj("stringData")))
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("secret %s holds %v, want %v", secret.str("metadata.name"), got, want)
	}

	// The config, with the Deployment's environment less its single-app
	// oidc and authz variables and with the Secret's, is valid.
	path := filepath.Join(t.TempDir(), "envoy-bff.yaml")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	env := withSecrets(t, deploymentEnv(t))
	single := maps.Clone(env)
	for k := range env {
		if strings.HasPrefix(k, "ENVOY_BFF_OIDC_") || strings.HasPrefix(k, "ENVOY_BFF_AUTHZ_") {
			delete(env, k)
		}
	}
	for _, k := range want {
		env[k] = "s"
		single[k] = "s"
	}
	if out, err := serveCheck(t, env, "--config", path); err != nil {
		t.Errorf("the ConfigMap's envoy-bff.yaml with the Deployment's environment is not valid: %v\n%s", err, out)
	}
	// Left in, the Deployment's ENVOY_BFF_OIDC_* variables are refused, as
	// the comment says.
	if out, err := serveCheck(t, single, "--config", path); err == nil || !strings.Contains(string(out), "not allowed with frontends") {
		t.Errorf("the single-app variables next to frontends: were accepted: %v\n%s", err, out)
	}
}
