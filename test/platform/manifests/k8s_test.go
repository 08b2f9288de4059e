package manifests

import (
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// k8sFiles are the Kubernetes samples: envoy-bff and its Redis.
var k8sFiles = []string{"envoy/k8s/envoy-bff.yaml", "envoy/k8s/redis.yaml"}

// TestKubernetesManifests decodes envoy/k8s strictly into k8s.io/api types,
// checks their cross-references and has the binary validate the
// Deployment's environment.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	objs := load(t, k8sFiles...)
	dep := find[*appsv1.Deployment](t, objs, "envoy-bff")
	ns := dep.Namespace
	if r := dep.Spec.Replicas; r == nil || *r < 2 {
		t.Errorf("replicas %v, want at least 2", r)
	}
	if ru := dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("a rolling update must keep every replica until its successor is ready (maxUnavailable: 0)")
	}
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	env := containerEnv(c)
	for name, envVar := range map[string]string{"grpc": "ENVOY_BFF_LISTEN_GRPC", "http": "ENVOY_BFF_LISTEN_HTTP", "admin": "ENVOY_BFF_LISTEN_ADMIN"} {
		if port(t, env[envVar]) != ports[name] {
			t.Errorf("container port %s=%d, but %s=%s", name, ports[name], envVar, env[envVar])
		}
	}
	for name, probe := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != name || probe.HTTPGet.Port != intstr.FromString("admin") {
			t.Errorf("no probe on admin %s: %+v", name, probe)
		}
	}
	sc, psc := c.SecurityContext, pod.SecurityContext
	if sc == nil || psc == nil || !isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !isTrue(psc.RunAsNonRoot) {
		t.Error("the pod must run as non-root with a read-only root filesystem and no privilege escalation")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("resources unset")
	}
	if env["ENVOY_BFF_AUTHZ_PATH_RULES"] == "" {
		t.Error("no path rules: Istio's CUSTOM provider cannot set context extensions")
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g <= 20 {
		t.Error("terminationGracePeriodSeconds must exceed the shutdown timeout (20s)")
	}

	// The Secret the pod reads its environment from exists and carries every
	// secret the environment needs.
	if len(c.EnvFrom) == 0 || c.EnvFrom[0].SecretRef == nil {
		t.Fatal("the container reads no Secret into its environment")
	}
	secret := find[*corev1.Secret](t, objs, c.EnvFrom[0].SecretRef.Name)
	for _, k := range []string{"ENVOY_BFF_OIDC_CLIENT_SECRET", "ENVOY_BFF_LISTEN_ADMIN_TOKEN"} {
		if _, ok := secret.StringData[k]; !ok {
			t.Errorf("secret %s lacks %s", secret.Name, k)
		}
	}

	// The session keys are files from a Secret volume (so they reload
	// without a restart): the file variables name files in the mounted
	// volume, mounted without subPath (which would never see an update).
	mounts := map[string]string{} // volume name → mount path
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("volume mount %s uses subPath: it would never see the Secret change", m.Name)
		}
		mounts[m.Name] = m.MountPath
	}
	keyFiles := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret == nil || mounts[v.Name] == "" {
			continue
		}
		keys := find[*corev1.Secret](t, objs, v.Secret.SecretName)
		for file, envName := range map[string]string{"encryption_keys": "ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE", "hash_key": "ENVOY_BFF_SESSION_HASH_KEY_FILE"} {
			if _, ok := keys.StringData[file]; ok && env[envName] == mounts[v.Name]+"/"+file {
				keyFiles[envName] = file
			}
		}
	}
	if len(keyFiles) != 2 {
		t.Errorf("the session key files are not both mounted from a Secret where the environment says (%v)", keyFiles)
	}
	if psc == nil || psc.FSGroup == nil || psc.RunAsGroup == nil || *psc.FSGroup != *psc.RunAsGroup {
		t.Error("without fsGroup = runAsGroup the process cannot read the key files (mode 0440)")
	}

	// The Services select the pods and expose the ports Envoy and Istio use;
	// the headless one mirrors the ClusterIP one (Envoy outside the mesh
	// must see every pod, not the ClusterIP).
	svc := find[*corev1.Service](t, objs, "envoy-bff")
	labels := dep.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if labels[k] != v {
			t.Errorf("service selector %s=%s matches no pod label", k, v)
		}
	}
	for _, p := range svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("service port %s targets no container port (%s)", p.Name, p.TargetPort.String())
		}
	}
	pods := find[*corev1.Service](t, objs, "envoy-bff-pods")
	if pods.Spec.ClusterIP != corev1.ClusterIPNone || !maps.Equal(pods.Spec.Selector, svc.Spec.Selector) || !apiequality.Semantic.DeepEqual(pods.Spec.Ports, svc.Spec.Ports) {
		t.Errorf("headless Service envoy-bff-pods does not mirror envoy-bff: %+v", pods.Spec)
	}
	pdb := find[*policyv1.PodDisruptionBudget](t, objs, "envoy-bff")
	if pdb.Spec.Selector == nil || !maps.Equal(pdb.Spec.Selector.MatchLabels, dep.Spec.Selector.MatchLabels) || pdb.Spec.MinAvailable == nil {
		t.Errorf("the PodDisruptionBudget does not keep envoy-bff's pods: %+v", pdb.Spec)
	}

	// Redis: the URL names its Service, which selects the StatefulSet; AOF on.
	redisSvc := find[*corev1.Service](t, objs, "redis")
	if u := mustURL(t, env["ENVOY_BFF_SESSION_REDIS_URL"]); u.Hostname() != redisSvc.Name+"."+ns+".svc.cluster.local" {
		t.Errorf("redis URL host %s is not the redis Service", u.Hostname())
	}
	sts := find[*appsv1.StatefulSet](t, objs, "redis")
	for k, v := range redisSvc.Spec.Selector {
		if sts.Spec.Template.Labels[k] != v {
			t.Errorf("the redis Service's selector %s=%s matches no Redis pod", k, v)
		}
	}
	if !strings.Contains(strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " "), "--appendonly yes") {
		t.Error("redis runs without its append-only file")
	}

	// With valid secrets filled in, the environment is a valid configuration.
	env = withSecrets(t, env)
	env["ENVOY_BFF_OIDC_CLIENT_SECRET"] = "s"
	if out, err := serveCheck(t, env); err != nil {
		t.Errorf("the Deployment's environment is not a valid configuration: %v\n%s", err, out)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// containerEnv is a container's literal environment (name → value).
func containerEnv(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

// deploymentEnv is the environment the sample Deployment gives envoy-bff.
func deploymentEnv(t *testing.T) map[string]string {
	t.Helper()
	dep := find[*appsv1.Deployment](t, load(t, k8sFiles[0]), "envoy-bff")
	return containerEnv(dep.Spec.Template.Spec.Containers[0])
}

// withSecrets is env with what the Secrets would give the pod: the session
// key files (written where the pod would have them, here in a temporary
// directory) and an admin token.
func withSecrets(t *testing.T, env map[string]string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	for envName, content := range map[string]string{
		"ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE": "k1:KgVFgyTWYXWrFuqvprIz6ZUBVW1nIRUmNLfVsCiC4J0=\n",
		"ENVOY_BFF_SESSION_HASH_KEY_FILE":        "6EnGCv+XVkQ8v4LYl21wbhfM/LDUEEXzsZiKbDvi6Rk=\n",
	} {
		path := filepath.Join(dir, filepath.Base(env[envName]))
		if err := os.WriteFile(path, []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
		env[envName] = path
	}
	env["ENVOY_BFF_LISTEN_ADMIN_TOKEN"] = "a-long-enough-admin-token"
	return env
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return int32(n)
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		t.Fatalf("URL %q: %v", s, err)
	}
	return u
}
