package helm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestValuesSchemaRefuses proves values.schema.json stops what would install
// a broken or silently different release: a misspelled key, a wrong type,
// chart-made key Secrets without keys.
func TestValuesSchemaRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, values, want string }{
		{"misspelled top-level key", "replicas: 3", "replicas"},
		{"misspelled nested key", "autoscaling: { enable: true }", "enable"},
		{"wrong type", "replicaCount: two", "replicaCount"},
		{"port out of range", "ports: { grpc: 70000 }", "grpc"},
		{"created key Secret without keys", "sessionKeys: { create: true }", "encryptionKeys"},
		{"malformed key line", `sessionKeys: { create: true, encryptionKeys: ["no-colon"], hashKey: x }`, "encryptionKeys"},
		{"bad scrape interval", "serviceMonitor: { enabled: true, interval: often }", "interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vals := map[string]any{}
			if err := yaml.Unmarshal([]byte(tc.values), &vals); err != nil {
				t.Fatal(err)
			}
			_, err := renderChart(vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render with %s: error %v, want one naming %q", tc.values, err, tc.want)
			}
		})
	}
}

// TestCheckRefusesBadConfig proves the config check in TestChart can fail:
// a config from values that envoy-bff refuses is refused here too, naming
// the field.
func TestCheckRefusesBadConfig(t *testing.T) {
	t.Parallel()
	bin := envoyBFFBinary(t)
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte("config: { session: { idle_timeout: 48h, absolute_lifetime: 1h }, oidc: { redirect_url: null } }"), &vals); err != nil {
		t.Fatal(err)
	}
	r := render(t, vals)
	dir := t.TempDir()
	file := filepath.Join(dir, "envoy-bff.yaml")
	if err := os.WriteFile(file, []byte(only[*corev1.ConfigMap](t, r, fullname+"-config").Data["envoy-bff.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ENVOY_BFF_OIDC_CLIENT_SECRET": "s", "ENVOY_BFF_LISTEN_ADMIN_TOKEN": testAdminToken}
	for name, content := range map[string]string{"ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE": testEncryptionKeys, "ENVOY_BFF_SESSION_HASH_KEY_FILE": testHashKey} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
		env[name] = p
	}
	out, err := runCheck(t, bin, file, env)
	if err == nil || !strings.Contains(out, "redirect_url") || !strings.Contains(out, "idle_timeout") {
		t.Errorf("serve --check passed or did not name the bad fields (%v):\n%s", err, out)
	}
}
