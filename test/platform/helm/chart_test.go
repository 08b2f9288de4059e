package helm

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/envoy-bff/envoy-bff/authz"
)

const fullname = releaseName + "-envoy-bff"

// Test keys and secrets, standing in for what the user's Secrets hold.
const (
	testEncryptionKeys = "k1:KgVFgyTWYXWrFuqvprIz6ZUBVW1nIRUmNLfVsCiC4J0=\n"
	testHashKey        = "6EnGCv+XVkQ8v4LYl21wbhfM/LDUEEXzsZiKbDvi6Rk=\n"
	testAdminToken     = "a-long-enough-admin-token"
)

// valueSets are the installs the chart must support, as a user would write
// their values (YAML, through Helm's schema and coalescing).
var valueSets = []struct {
	name   string
	values string
	// secretEnv is what the user's own env Secret would hold (when the
	// chart does not create it).
	secretEnv map[string]string
	check     func(t *testing.T, r release)
}{
	{
		name:      "defaults",
		secretEnv: map[string]string{"ENVOY_BFF_OIDC_CLIENT_SECRET": "s", "ENVOY_BFF_LISTEN_ADMIN_TOKEN": testAdminToken},
		check: func(t *testing.T, r release) {
			dep := only[*appsv1.Deployment](t, r, fullname)
			if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
				t.Errorf("replicas %v, want at least 2", dep.Spec.Replicas)
			}
			if len(all[*autoscalingv2.HorizontalPodAutoscaler](r)) != 0 || len(all[*monitoringv1.ServiceMonitor](r)) != 0 {
				t.Error("HPA or ServiceMonitor rendered though off by default")
			}
			if len(all[*corev1.Secret](r)) != 0 {
				t.Error("the chart created a Secret by default: keys must not sit in Helm values unless asked")
			}
			pods := only[*corev1.Service](t, r, fullname+"-pods")
			if pods.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s is not headless: an Envoy of your own would see one host", pods.Name)
			}
			if ru := dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
				t.Errorf("rolling update %+v: must keep maxUnavailable 0", dep.Spec.Strategy.RollingUpdate)
			}
			if !strings.Contains(r.notes, "create secret generic "+fullname+"-keys") {
				t.Errorf("NOTES.txt does not say how to create the keys Secret:\n%s", r.notes)
			}
		},
	},
	{
		name: "autoscaling",
		values: `
autoscaling:
  enabled: true
  minReplicas: 3
  maxReplicas: 12
  targetMemoryUtilizationPercentage: 80
podDisruptionBudget:
  maxUnavailable: 1
`,
		secretEnv: map[string]string{"ENVOY_BFF_OIDC_CLIENT_SECRET": "s", "ENVOY_BFF_LISTEN_ADMIN_TOKEN": testAdminToken},
		check: func(t *testing.T, r release) {
			dep := only[*appsv1.Deployment](t, r, fullname)
			if dep.Spec.Replicas != nil {
				t.Errorf("replicas %d set with an HPA: every upgrade would reset the HPA's count", *dep.Spec.Replicas)
			}
			hpa := only[*autoscalingv2.HorizontalPodAutoscaler](t, r, fullname)
			ref := hpa.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != dep.Name {
				t.Errorf("HPA scales %+v, not the Deployment", ref)
			}
			if *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas != 12 || len(hpa.Spec.Metrics) != 2 {
				t.Errorf("HPA spec %+v", hpa.Spec)
			}
			pdb := only[*policyv1.PodDisruptionBudget](t, r, fullname)
			if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
				t.Errorf("PDB %+v: want maxUnavailable 1 alone", pdb.Spec)
			}
		},
	},
	{
		name: "service monitor",
		values: `
serviceMonitor:
  enabled: true
  labels: { release: prometheus }
  interval: 15s
ports: { admin: 9100 }
config:
  antiforgery: { header: X-Requested-By }
`,
		secretEnv: map[string]string{"ENVOY_BFF_OIDC_CLIENT_SECRET": "s", "ENVOY_BFF_LISTEN_ADMIN_TOKEN": testAdminToken},
		check: func(t *testing.T, r release) {
			sm := only[*monitoringv1.ServiceMonitor](t, r, fullname)
			if sm.Labels["release"] != "prometheus" {
				t.Errorf("ServiceMonitor labels %v lack the one Prometheus selects by", sm.Labels)
			}
			sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			var scraped []*corev1.Service
			for _, svc := range all[*corev1.Service](r) {
				if sel.Matches(labels.Set(svc.Labels)) {
					scraped = append(scraped, svc)
				}
			}
			if len(scraped) != 1 || scraped[0].Name != fullname+"-metrics" {
				t.Fatalf("the ServiceMonitor selects %d Services, want %s-metrics alone", len(scraped), fullname)
			}
			if len(sm.Spec.Endpoints) != 1 {
				t.Fatalf("endpoints %+v", sm.Spec.Endpoints)
			}
			ep := sm.Spec.Endpoints[0]
			if ep.Path != "/metrics" || string(ep.Interval) != "15s" {
				t.Errorf("endpoint %+v", ep)
			}
			c := only[*appsv1.Deployment](t, r, fullname).Spec.Template.Spec.Containers[0]
			var target string
			for _, p := range scraped[0].Spec.Ports {
				if p.Name == ep.Port {
					target = p.TargetPort.String()
				}
			}
			if containerPort(c, target) != 9100 {
				t.Errorf("the scraped port %q is not the admin port 9100 (%+v)", target, c.Ports)
			}
			if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, namespace) {
				t.Errorf("namespaceSelector %+v", sm.Spec.NamespaceSelector)
			}
		},
	},
	{
		name: "redis sentinel, chart-made secrets",
		values: `
config:
  session:
    backend: redis
    key_prefix: "shop:"
    idle_timeout: 30m
    redis:
      url: redis://sentinel-1:26379/0?master_name=mymaster&addr=sentinel-2:26379&addr=sentinel-3:26379
      pool_size: 50
      read_timeout: 500ms
      wait_replicas: 1
      wait_timeout: 400ms
sessionKeys:
  create: true
  encryptionKeys:
    - "k2:pRxb2Rj4lJbAXHdkZ7zqLrR0uvxeXAq9Dkj6X8e6F2E="
    - "k1:KgVFgyTWYXWrFuqvprIz6ZUBVW1nIRUmNLfVsCiC4J0="
  hashKey: "6EnGCv+XVkQ8v4LYl21wbhfM/LDUEEXzsZiKbDvi6Rk="
envSecret:
  create: true
  values:
    ENVOY_BFF_OIDC_CLIENT_SECRET: s3cret
    ENVOY_BFF_LISTEN_ADMIN_TOKEN: a-long-enough-admin-token
`,
		check: func(t *testing.T, r release) {
			cfg := renderedConfig(t, r)
			redis, _ := cfg["session"].(map[string]any)["redis"].(map[string]any)
			if redis["pool_size"] != float64(50) || !strings.HasPrefix(redis["url"].(string), "redis://sentinel-1:26379/0?master_name=") {
				t.Errorf("redis config %v", redis)
			}
			keys := only[*corev1.Secret](t, r, fullname+"-keys")
			if got := keys.StringData["encryption_keys"]; got != "k2:pRxb2Rj4lJbAXHdkZ7zqLrR0uvxeXAq9Dkj6X8e6F2E=\nk1:KgVFgyTWYXWrFuqvprIz6ZUBVW1nIRUmNLfVsCiC4J0=\n" {
				t.Errorf("encryption_keys %q: want one id:secret line per key, the primary first", got)
			}
			if strings.Contains(r.notes, "create secret generic") {
				t.Error("NOTES.txt asks for Secrets the chart created")
			}
		},
	},
	{
		name: "frontends",
		values: `
config:
  oidc: null
  authz: null
  reload: { poll_interval: 10s }
  frontends:
    - name: shop
      hosts: [shop.example.com]
      oidc:
        issuer: https://idp.example.com/realms/app
        client_id: shop
        redirect_url: https://shop.example.com/bff/callback
      authz:
        path_rules:
          - { prefix: /api/, policy: user }
          - { exact: /api/events, policy: user, realtime: true }
    - name: admin
      hosts: [admin.example.com]
      session: { idle_timeout: 15m }
      oidc:
        issuer: https://idp.example.com/realms/staff
        client_id: admin-console
        redirect_url: https://admin.example.com/bff/callback
      authz:
        path_rules: [{ prefix: /api/, policy: user }]
        identity_headers: { x-user-sub: sub }
envSecret:
  secretName: bff-frontends
extraEnv:
  - { name: ENVOY_BFF_LOG_LEVEL, value: debug }
`,
		secretEnv: map[string]string{
			"ENVOY_BFF_FRONTENDS_SHOP_OIDC_CLIENT_SECRET":  "s1",
			"ENVOY_BFF_FRONTENDS_ADMIN_OIDC_CLIENT_SECRET": "s2",
			"ENVOY_BFF_LISTEN_ADMIN_TOKEN":                 testAdminToken,
		},
		check: func(t *testing.T, r release) {
			cfg := renderedConfig(t, r)
			if _, ok := cfg["oidc"]; ok {
				t.Error("config.oidc: null left the top-level oidc in: envoy-bff refuses it with frontends")
			}
			if fs, _ := cfg["frontends"].([]any); len(fs) != 2 {
				t.Errorf("frontends %v", cfg["frontends"])
			}
			c := only[*appsv1.Deployment](t, r, fullname).Spec.Template.Spec.Containers[0]
			if len(c.EnvFrom) == 0 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "bff-frontends" {
				t.Errorf("envFrom %+v: want the user's Secret bff-frontends", c.EnvFrom)
			}
		},
	},
}

// TestChart renders each value set, lints it, decodes every object strictly,
// checks what ties the objects together, and has envoy-bff validate the
// config the pods would read.
func TestChart(t *testing.T) {
	t.Parallel()
	bin := envoyBFFBinary(t)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			// Each its own copy: Helm's linter changes the map it is given.
			lintChart(t, parseValues(t, vs.values))
			r := render(t, parseValues(t, vs.values))
			checkWiring(t, r)
			checkConfig(t, bin, r, vs.secretEnv)
			vs.check(t, r)
		})
	}
}

// parseValues reads a values file as Helm would.
func parseValues(t *testing.T, s string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &vals); err != nil {
		t.Fatal(err)
	}
	return vals
}

// lintChart runs Helm's linter with vals and fails on any warning or error.
func lintChart(t *testing.T, vals map[string]any) {
	t.Helper()
	res := lint.RunAll(chartDir, vals, namespace)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m.Error())
		}
	}
}

// checkWiring checks what a cluster would not tell until traffic fails:
// Services and the PDB select the pods, ports line up, probes hit envoy-bff's
// health endpoints on its admin listener, the session keys and config are
// whole volumes (no subPath) where the config says, and the grace period
// outlasts envoy-bff's drain.
func checkWiring(t *testing.T, r release) {
	checkNotesHeaders(t, r)
	t.Helper()
	dep := only[*appsv1.Deployment](t, r, fullname)
	pod := dep.Spec.Template
	podLabels := labels.Set(pod.Labels)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector %v does not match its pods (%v)", dep.Spec.Selector, err)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	cfg := renderedConfig(t, r)
	listen, _ := cfg["listen"].(map[string]any)
	for _, name := range []string{"grpc", "http", "admin"} {
		addr, _ := listen[name].(string)
		_, p, err := net.SplitHostPort(addr)
		if port, _ := strconv.Atoi(p); err != nil || port != containerPort(c, name) {
			t.Errorf("listen.%s %q is not container port %s (%d)", name, addr, name, containerPort(c, name))
		}
	}
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.ReadinessProbe, "/readyz"}, {c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("probe for %s: %+v", p.path, p.probe)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container must have a read-only root filesystem and no privilege escalation")
	}
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.FSGroup == nil || psc.RunAsGroup == nil || *psc.FSGroup != *psc.RunAsGroup {
		t.Error("the pod must run as non-root with fsGroup = runAsGroup (the key files are mode 0440)")
	}

	// The args name the config file in the ConfigMap volume.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("volume mount %s uses subPath: it would never see its Secret or ConfigMap change", m.Name)
		}
		mounts[m.Name] = m.MountPath
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	configPath := ""
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			configPath = c.Args[i+1]
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" || configPath == "" {
		t.Fatalf("args %q: want serve --config FILE", c.Args)
	}
	cmName, file := volumeFor(t, volumes, mounts, configPath)
	cmVol := volumes[cmName]
	if cmVol.ConfigMap == nil || cmVol.ConfigMap.Name != fullname+"-config" || file != "envoy-bff.yaml" {
		t.Errorf("--config %s is not envoy-bff.yaml of the ConfigMap %s-config", configPath, fullname)
	}

	// The key files the config names are the keys of one Secret volume.
	session, _ := cfg["session"].(map[string]any)
	for field, key := range map[string]string{"encryption_keys_file": "encryption_keys", "hash_key_file": "hash_key"} {
		p, _ := session[field].(string)
		vol, f := volumeFor(t, volumes, mounts, p)
		if v := volumes[vol]; v.Secret == nil || f != key {
			t.Errorf("session.%s %q is not file %s of a Secret volume", field, p, key)
		} else if s := secretNamed(r, v.Secret.SecretName); s != nil {
			if _, ok := s.StringData[key]; !ok {
				t.Errorf("the chart's Secret %s lacks %s (has %s)", s.Name, key, keys(s.StringData))
			}
		}
	}

	// Services and the PDB reach the pods, on ports the container has.
	for _, svc := range all[*corev1.Service](r) {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service %s selects %v, not the pods", svc.Name, svc.Spec.Selector)
		}
		for _, p := range svc.Spec.Ports {
			if containerPort(c, p.TargetPort.String()) == 0 {
				t.Errorf("Service %s port %s targets %s, which the container does not have", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	svc := only[*corev1.Service](t, r, fullname)
	if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].Name != "grpc" || ptrString(svc.Spec.Ports[0].AppProtocol) != "grpc" {
		t.Errorf("Service %s ports %+v: want grpc (appProtocol grpc) and http", svc.Name, svc.Spec.Ports)
	}
	for _, pdb := range all[*policyv1.PodDisruptionBudget](r) {
		s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !s.Matches(podLabels) {
			t.Errorf("PDB %s does not select the pods", pdb.Name)
		}
	}
	if sa := pod.Spec.ServiceAccountName; sa != "default" {
		found := false
		for _, a := range all[*corev1.ServiceAccount](r) {
			found = found || a.Name == sa
		}
		if !found {
			t.Errorf("service account %s is not rendered", sa)
		}
	}

	// A stopping replica turns unready, waits drain_delay, drains within
	// shutdown_timeout: the kubelet must not kill it before.
	drain := duration(t, listen["drain_delay"], 5*time.Second)
	shutdown := duration(t, listen["shutdown_timeout"], 15*time.Second)
	if grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= drain+shutdown {
		t.Errorf("terminationGracePeriodSeconds %s is not above drain_delay + shutdown_timeout (%s)", grace, drain+shutdown)
	}
}

// checkConfig runs `envoy-bff serve --check` on the rendered config with the
// environment the pod would have: the container's env, the env Secret's
// variables (the chart's, or secretEnv standing in for the user's), and the
// key files written where the config's paths point in a temporary directory.
func checkConfig(t *testing.T, bin string, r release, secretEnv map[string]string) {
	t.Helper()
	dir := t.TempDir()
	cm := only[*corev1.ConfigMap](t, r, fullname+"-config")
	configFile := filepath.Join(dir, "envoy-bff.yaml")
	if err := os.WriteFile(configFile, []byte(cm.Data["envoy-bff.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	dep := only[*appsv1.Deployment](t, r, fullname)
	c := dep.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s from a reference: the test cannot resolve it", e.Name)
		}
		env[e.Name] = e.Value
	}
	secretName := c.EnvFrom[0].SecretRef.Name
	if s := secretNamed(r, secretName); s != nil {
		maps.Copy(env, s.StringData)
	} else {
		maps.Copy(env, secretEnv)
	}
	// The key Secret's files (the chart's, or test keys) at paths of our own.
	files := map[string]string{"encryption_keys": testEncryptionKeys, "hash_key": testHashKey}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Name == "session-keys" && v.Secret != nil {
			if s := secretNamed(r, v.Secret.SecretName); s != nil {
				files = s.StringData
			}
		}
	}
	for key, envName := range map[string]string{"encryption_keys": "ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE", "hash_key": "ENVOY_BFF_SESSION_HASH_KEY_FILE"} {
		p := filepath.Join(dir, key)
		if err := os.WriteFile(p, []byte(files[key]), 0o400); err != nil {
			t.Fatal(err)
		}
		env[envName] = p
	}
	if out, err := runCheck(t, bin, configFile, env); err != nil {
		t.Errorf("envoy-bff serve --check on the rendered config: %v\n%s\n--- config ---\n%s", err, out, cm.Data["envoy-bff.yaml"])
	}
}

// runCheck runs `envoy-bff serve --check --config file` with env alone (none
// of the test process's environment), bounded in time.
func runCheck(t *testing.T, bin, file string, env map[string]string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--check", "--config", file)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// envoyBFFBinary is $ENVOY_BFF_BIN; the test fails without it.
func envoyBFFBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("ENVOY_BFF_BIN")
	if bin == "" {
		t.Fatal("ENVOY_BFF_BIN is not set: run through make test, or `make build` and export ENVOY_BFF_BIN=$PWD/bin/envoy-bff")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("ENVOY_BFF_BIN: %v (run `make build`)", err)
	}
	return bin
}

// renderedConfig is envoy-bff's config file from the rendered ConfigMap.
func renderedConfig(t *testing.T, r release) map[string]any {
	t.Helper()
	cm := only[*corev1.ConfigMap](t, r, fullname+"-config")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["envoy-bff.yaml"]), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// volumeFor finds the mounted volume that holds path, and the file's name
// in it (a direct child of the mount).
func volumeFor(t *testing.T, volumes map[string]corev1.Volume, mounts map[string]string, p string) (volume, file string) {
	t.Helper()
	for name, dir := range mounts {
		if filepath.Dir(p) == filepath.Clean(dir) {
			if _, ok := volumes[name]; !ok {
				t.Errorf("mount %s names no volume", name)
			}
			return name, filepath.Base(p)
		}
	}
	t.Errorf("%q is in no mounted volume", p)
	return "", ""
}

// containerPort is the port named name (0 when there is none).
func containerPort(c corev1.Container, name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return int(p.ContainerPort)
		}
	}
	return 0
}

// secretNamed is the rendered Secret called name, or nil.
func secretNamed(r release, name string) *corev1.Secret {
	for _, s := range all[*corev1.Secret](r) {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// duration reads a config duration, def when unset.
func duration(t *testing.T, v any, def time.Duration) time.Duration {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// checkNotesHeaders: NOTES.txt names exactly the request headers Check
// reads, with the release's own anti-forgery header.
func checkNotesHeaders(t *testing.T, r release) {
	t.Helper()
	header := "X-CSRF"
	if af, ok := renderedConfig(t, r)["antiforgery"].(map[string]any); ok && af["header"] != nil {
		header = fmt.Sprint(af["header"])
	}
	for _, line := range strings.Split(r.notes, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "check headers"); ok {
			if got, want := strings.Split(strings.TrimSpace(v), ", "), authz.RequestHeaders(header); !slices.Equal(got, want) {
				t.Errorf("NOTES.txt lists check headers %v, want what Check reads: %v", got, want)
			}
			return
		}
	}
	t.Errorf("NOTES.txt does not list the headers Check reads:\n%s", r.notes)
}
