package deploy

import (
	"cmp"
	"encoding/json"
	"flag"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/envoy-bff/envoy-bff/authz"
	"github.com/envoy-bff/envoy-bff/envoy"
)

var update = flag.Bool("update", false, "rewrite envoy/compose/envoy.yaml from the template")

// root is the repository's top level.
const root = "../.."

// composePorts is how docker-compose.yml places everything behind Envoy.
var composePorts = envoy.Ports{
	ListenAddress: "0.0.0.0", ListenPort: 10000, AdminPort: 9901,
	BFFHosts: []string{"envoy-bff-1", "envoy-bff-2"}, BFFGRPCPorts: []int{9001, 9001}, BFFHTTPPorts: []int{9002, 9002},
	APIHost: "apps", APIPort: 8081, SPAHost: "apps", SPAPort: 8082,
}

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		DependsOn   []string          `yaml:"depends_on"`
		ReadOnly    bool              `yaml:"read_only"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// TestComposeEnvoyConfig: the Envoy config compose mounts is the repo's
// template rendered for compose's hosts, and Envoy accepts it.
func TestComposeEnvoyConfig(t *testing.T) {
	want, err := envoy.Render(composePorts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "envoy", "compose", "envoy.yaml")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s is not the template's rendering; run: go test ./test/deploy -run TestComposeEnvoyConfig -update", path)
	}
	bin := os.Getenv("ENVOY_BIN")
	if bin == "" {
		t.Fatal("ENVOY_BIN is not set: run through make test (never skipped)")
	}
	if out, err := exec.CommandContext(t.Context(), bin, "--mode", "validate", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("envoy --mode validate %s: %v\n%s", path, err, out)
	}
}

// TestComposeWiring checks every cross-reference of docker-compose.yml.
func TestComposeWiring(t *testing.T) {
	t.Parallel()
	c := readCompose(t)
	svc := func(name string) bool { _, ok := c.Services[name]; return ok }
	for _, name := range []string{"envoy", "envoy-bff-1", "envoy-bff-2", "redis", "keycloak", "apps"} {
		if !svc(name) {
			t.Fatalf("service %s missing", name)
		}
	}

	// Envoy mounts the rendered config; every upstream in it is a service.
	env := c.Services["envoy"]
	if !slices.Contains(env.Volumes, "./envoy/compose/envoy.yaml:/etc/envoy/envoy.yaml:ro") || !slices.Contains(env.Command, "/etc/envoy/envoy.yaml") {
		t.Errorf("envoy does not run envoy/compose/envoy.yaml: %v %v", env.Volumes, env.Command)
	}
	if env.Image != "envoyproxy/envoy:v"+envoyVersion(t) {
		t.Errorf("envoy image %q, want the bootstrap's Envoy %s", env.Image, envoyVersion(t))
	}
	if !slices.Contains(env.Ports, strconv.Itoa(composePorts.ListenPort)+":"+strconv.Itoa(composePorts.ListenPort)) {
		t.Errorf("envoy does not publish its listener: %v", env.Ports)
	}
	for _, h := range append(slices.Clone(composePorts.BFFHosts), composePorts.APIHost, composePorts.SPAHost) {
		if !svc(h) {
			t.Errorf("the Envoy config names host %q, which is no service", h)
		}
	}

	// The replicas listen where Envoy sends, use the compose Redis and Keycloak.
	realm := readRealm(t)
	for _, name := range composePorts.BFFHosts {
		b := c.Services[name]
		e := b.Environment
		if port(t, e["ENVOY_BFF_LISTEN_GRPC"]) != composePorts.BFFGRPCPorts[0] || port(t, e["ENVOY_BFF_LISTEN_HTTP"]) != composePorts.BFFHTTPPorts[0] {
			t.Errorf("%s listens on %s and %s, Envoy sends to %d and %d", name, e["ENVOY_BFF_LISTEN_GRPC"], e["ENVOY_BFF_LISTEN_HTTP"], composePorts.BFFGRPCPorts[0], composePorts.BFFHTTPPorts[0])
		}
		if u := mustURL(t, e["ENVOY_BFF_SESSION_REDIS_URL"]); u.Hostname() != "redis" {
			t.Errorf("%s uses Redis at %s", name, u.Host)
		}
		if u := mustURL(t, e["ENVOY_BFF_OIDC_ISSUER"]); u.Hostname() != "keycloak" || u.Path != "/realms/"+realm.Realm {
			t.Errorf("%s's issuer %s is not the compose Keycloak's realm %s", name, u, realm.Realm)
		}
		if e["ENVOY_BFF_OIDC_CLIENT_ID"] != realm.Clients[0].ClientID || e["ENVOY_BFF_OIDC_CLIENT_SECRET"] != realm.Clients[0].Secret {
			t.Errorf("%s's client is not the realm's", name)
		}
		if redirect := mustURL(t, e["ENVOY_BFF_OIDC_REDIRECT_URL"]); redirect.Port() != strconv.Itoa(composePorts.ListenPort) || redirect.Path != "/bff/callback" {
			t.Errorf("%s's redirect URL %s does not go through Envoy", name, redirect)
		}
		if !b.ReadOnly || !slices.Contains(b.DependsOn, "redis") {
			t.Errorf("%s: read_only=%v depends_on=%v", name, b.ReadOnly, b.DependsOn)
		}
		checkConfig(t, name, e)
	}
	if c.Services["envoy-bff-1"].Environment["ENVOY_BFF_SESSION_ENCRYPTION_KEYS"] != c.Services["envoy-bff-2"].Environment["ENVOY_BFF_SESSION_ENCRYPTION_KEYS"] {
		t.Error("the replicas have different keys: neither could read the other's sessions")
	}

	// Redis persists; Keycloak is the bootstrap's, importing the repo's realm.
	r := c.Services["redis"]
	if !strings.Contains(strings.Join(r.Command, " "), "--appendonly yes") || len(r.Volumes) == 0 {
		t.Errorf("redis without AOF persistence: %v %v", r.Command, r.Volumes)
	}
	k := c.Services["keycloak"]
	if k.Image != "quay.io/keycloak/keycloak:"+keycloakVersion(t) {
		t.Errorf("keycloak image %q, want the bootstrap's %s", k.Image, keycloakVersion(t))
	}
	if !slices.Contains(k.Volumes, "./test/e2e/realm.json:/opt/keycloak/data/import/envoy-bff-realm.json:ro") || !slices.Contains(k.Command, "--import-realm") {
		t.Errorf("keycloak does not import test/e2e/realm.json: %v %v", k.Volumes, k.Command)
	}
	if _, err := os.Stat(filepath.Join(root, "test", "e2e", "realm.json")); err != nil {
		t.Error(err)
	}
	for _, ph := range placeholders(t) {
		if k.Environment[ph] == "" {
			t.Errorf("the realm file's ${%s} has no value in the keycloak service", ph)
		}
	}
	if bc := mustURL(t, k.Environment["BACKCHANNEL_URL"]); bc.Hostname() != "envoy" || bc.Port() != strconv.Itoa(composePorts.ListenPort) {
		t.Errorf("Keycloak posts back-channel logouts to %s, not to Envoy inside the network", bc)
	}
	a := c.Services["apps"]
	if cmd := strings.Join(a.Command, " "); !strings.Contains(cmd, ":"+strconv.Itoa(composePorts.APIPort)) || !strings.Contains(cmd, ":"+strconv.Itoa(composePorts.SPAPort)) {
		t.Errorf("apps listens on %q, Envoy sends to %d and %d", cmd, composePorts.APIPort, composePorts.SPAPort)
	}
}

// checkConfig has the real binary validate a replica's environment.
func checkConfig(t *testing.T, name string, env map[string]string) {
	t.Helper()
	if out, err := serveCheck(t, env); err != nil {
		t.Errorf("%s's environment is not a valid configuration: %v\n%s", name, err, out)
	}
}

// serveCheck runs `envoy-bff serve --check` with env alone as its
// environment and args after it (e.g. --config FILE).
func serveCheck(t *testing.T, env map[string]string, args ...string) ([]byte, error) {
	t.Helper()
	bin := os.Getenv("ENVOY_BFF_BIN")
	if bin == "" {
		t.Fatal("ENVOY_BFF_BIN is not set: run through make test")
	}
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"serve", "--check"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd.CombinedOutput()
}

type realmFile struct {
	Realm   string `json:"realm"`
	Clients []struct {
		ClientID string `json:"clientId"`
		Secret   string `json:"secret"`
	} `json:"clients"`
}

func readRealm(t *testing.T) realmFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "test", "e2e", "realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r realmFile
	if err := json.Unmarshal(raw, &r); err != nil || len(r.Clients) == 0 {
		t.Fatalf("realm.json: %v", err)
	}
	return r
}

// placeholders are the ${VAR}s Keycloak fills from its environment.
func placeholders(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "test", "e2e", "realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(string(raw), -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// bootstrapVar reads a pinned version from test/bootstrap.sh.
func bootstrapVar(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "test", "bootstrap.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(name + `="\$\{` + name + `:-([0-9.]+)\}"`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("bootstrap.sh pins no %s", name)
	}
	return string(m[1])
}

func envoyVersion(t *testing.T) string    { return bootstrapVar(t, "ENVOY_VERSION") }
func keycloakVersion(t *testing.T) string { return bootstrapVar(t, "KEYCLOAK_VERSION") }

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		t.Fatalf("URL %q: %v", s, err)
	}
	return u
}

// TestCheckHeadersAreWhatCheckReads: the headers the Envoy template's
// ext_authz filter sends (allowed_headers) are the ones authz says Check
// reads, whatever the anti-forgery header is called; the rendered
// configs list exactly them.
func TestCheckHeadersAreWhatCheckReads(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "X-CSRF", "X-Requested-By"} {
		want := authz.RequestHeaders(cmp.Or(name, "X-CSRF"))
		if got := envoy.CheckHeaders(name); !slices.Equal(got, want) {
			t.Errorf("envoy.CheckHeaders(%q) = %v, authz.RequestHeaders = %v", name, got, want)
		}
		raw, err := envoy.Render(envoy.Ports{ListenPort: 1, AdminPort: 2, BFFGRPCPorts: []int{3}, BFFHTTPPorts: []int{4}, APIPort: 5, SPAPort: 6, AntiforgeryHeader: name})
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "- exact: "); ok {
				listed = append(listed, v)
			}
		}
		if !slices.Equal(listed, want) {
			t.Errorf("the rendered allowed_headers for %q list %v, want %v", name, listed, want)
		}
	}
	if _, err := envoy.Render(envoy.Ports{ListenPort: 1, AdminPort: 2, AntiforgeryHeader: "x: y"}); err == nil {
		t.Error("an anti-forgery header that is not a header name was rendered")
	}
}
