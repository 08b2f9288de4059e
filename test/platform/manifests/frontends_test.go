package manifests

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// sampleFrontend is what a sample's envoy-bff config says of one app; the
// whole config is validated by `envoy-bff serve --check`.
type sampleFrontend struct {
	Name       string   `json:"name"`
	Hosts      []string `json:"hosts"`
	PathPrefix string   `json:"path_prefix"`
	OIDC       struct {
		RedirectURL           string `json:"redirect_url"`
		PostLogoutRedirectURL string `json:"post_logout_redirect_url"`
	} `json:"oidc"`
}

// prefix is the frontend's path prefix, "/" unless it names one.
func (f sampleFrontend) prefix() string {
	if f.PathPrefix == "" {
		return "/"
	}
	return f.PathPrefix
}

// frontendsConfig reads the envoy-bff config a sample's ConfigMap carries:
// at least two frontends, each with hosts, each redirecting to its own
// hosts over https.
func frontendsConfig(t *testing.T, cm *corev1.ConfigMap) (string, []sampleFrontend) {
	t.Helper()
	raw := cm.Data["envoy-bff.yaml"]
	var cfg struct {
		Frontends []sampleFrontend `json:"frontends"`
	}
	if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil || len(cfg.Frontends) < 2 {
		t.Fatalf("ConfigMap %s's envoy-bff.yaml holds %d frontends (%v); the sample shows two", cm.Name, len(cfg.Frontends), err)
	}
	for _, f := range cfg.Frontends {
		if len(f.Hosts) == 0 {
			t.Errorf("frontend %s has no hosts: its browser endpoints are picked by host", f.Name)
		}
		for _, u := range []string{f.OIDC.RedirectURL, f.OIDC.PostLogoutRedirectURL} {
			if pu := mustURL(t, u); pu.Scheme != "https" || !slices.Contains(f.Hosts, pu.Hostname()) {
				t.Errorf("frontend %s: %s is not on its own hosts %v over https", f.Name, u, f.Hosts)
			}
		}
		if pu := mustURL(t, f.OIDC.RedirectURL); pu.Path != f.prefix()+"bff/callback" {
			t.Errorf("frontend %s: redirect_url path %s, want %sbff/callback", f.Name, pu.Path, f.prefix())
		}
	}
	return raw, cfg.Frontends
}

// checkFrontendsConfig: the Secret holds exactly each frontend's client
// secret, under its ENVOY_BFF_FRONTENDS_<NAME>_ variable; the config, with
// the Deployment's environment less its single-app oidc and authz variables
// and with the Secret's, passes `envoy-bff serve --check`; left in, those
// variables are refused, as the sample's comment says.
func checkFrontendsConfig(t *testing.T, raw string, frontends []sampleFrontend, secret *corev1.Secret) {
	t.Helper()
	var want []string
	for _, f := range frontends {
		want = append(want, "ENVOY_BFF_FRONTENDS_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))+"_OIDC_CLIENT_SECRET")
	}
	got := slices.Sorted(maps.Keys(secret.StringData))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("secret %s holds %v, want %v", secret.Name, got, want)
	}

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
	if out, err := serveCheck(t, single, "--config", path); err == nil || !strings.Contains(string(out), "not allowed with frontends") {
		t.Errorf("the single-app variables next to frontends: were accepted: %v\n%s", err, out)
	}
}
