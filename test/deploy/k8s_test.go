package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// doc is one Kubernetes object, read loosely.
type doc map[string]any

// get walks a path of map keys and list indexes ("spec.template.spec.containers.0").
func (d doc) get(path string) any {
	var cur any = map[string]any(d)
	for _, p := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case doc: // yaml.v3 decodes nested mappings into the target's map type
			cur = c[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func (d doc) str(path string) string { s, _ := d.get(path).(string); return s }

// obj is the mapping at path (empty if there is none).
func (d doc) obj(path string) doc {
	switch m := d.get(path).(type) {
	case doc:
		return m
	case map[string]any:
		return doc(m)
	}
	return doc{}
}

// list is the sequence at path.
func (d doc) list(path string) []any { l, _ := d.get(path).([]any); return l }

// asDoc reads one element of a sequence as a mapping.
func asDoc(v any) doc {
	switch m := v.(type) {
	case doc:
		return m
	case map[string]any:
		return doc(m)
	}
	return doc{}
}

func readManifests(t *testing.T, files ...string) []doc {
	t.Helper()
	var out []doc
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var d doc
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if d != nil {
				out = append(out, d)
			}
		}
	}
	return out
}

func find(t *testing.T, docs []doc, kind, name string) doc {
	t.Helper()
	for _, d := range docs {
		if d.str("kind") == kind && (name == "" || d.str("metadata.name") == name) {
			return d
		}
	}
	t.Fatalf("no %s %q", kind, name)
	return nil
}

// TestKubernetesManifests checks the envoy-bff and Redis manifests and their
// cross-references, and has the binary validate the Deployment's environment.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	docs := readManifests(t, "envoy/k8s/envoy-bff.yaml", "envoy/k8s/redis.yaml")
	dep := find(t, docs, "Deployment", "envoy-bff")
	ns := dep.str("metadata.namespace")
	if n, _ := dep.get("spec.replicas").(int); n < 2 {
		t.Errorf("replicas %v, want at least 2", dep.get("spec.replicas"))
	}
	c := dep.obj("spec.template.spec.containers.0")
	ports := map[string]int{}
	for _, p := range c.list("ports") {
		pm := asDoc(p)
		ports[pm.str("name")], _ = pm["containerPort"].(int)
	}
	env := map[string]string{}
	for _, e := range c.list("env") {
		em := asDoc(e)
		env[em.str("name")] = em.str("value")
	}
	for name, envVar := range map[string]string{"grpc": "ENVOY_BFF_LISTEN_GRPC", "http": "ENVOY_BFF_LISTEN_HTTP", "admin": "ENVOY_BFF_LISTEN_ADMIN"} {
		if port(t, env[envVar]) != ports[name] {
			t.Errorf("container port %s=%d, but %s=%s", name, ports[name], envVar, env[envVar])
		}
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if c.str(probe+".httpGet.path") != path || c.str(probe+".httpGet.port") != "admin" {
			t.Errorf("%s: %v", probe, c.get(probe))
		}
	}
	if c.get("securityContext.readOnlyRootFilesystem") != true || c.get("securityContext.allowPrivilegeEscalation") != false ||
		dep.get("spec.template.spec.securityContext.runAsNonRoot") != true {
		t.Error("the pod must run as non-root with a read-only root filesystem and no privilege escalation")
	}
	if c.get("resources.requests.cpu") == nil || c.get("resources.limits.memory") == nil {
		t.Error("resources unset")
	}
	if env["ENVOY_BFF_AUTHZ_PATH_RULES"] == "" {
		t.Error("no path rules: Istio's CUSTOM provider cannot set context extensions")
	}

	// The Secret the pod reads its environment from exists and carries every
	// secret the environment needs.
	secretName := c.str("envFrom.0.secretRef.name")
	secret := find(t, docs, "Secret", secretName)
	data := secret.obj("stringData")
	for _, k := range []string{"ENVOY_BFF_OIDC_CLIENT_SECRET", "ENVOY_BFF_LISTEN_ADMIN_TOKEN"} {
		if _, ok := data[k]; !ok {
			t.Errorf("secret %s lacks %s", secretName, k)
		}
	}
	// The session keys are files from a Secret volume (so they reload
	// without a restart): the file variables name files in the mounted
	// volume, mounted without subPath (which would never see an update).
	mounts := map[string]string{} // volume name → mount path
	for _, m := range c.list("volumeMounts") {
		md := asDoc(m)
		if md.get("subPath") != nil {
			t.Errorf("volume mount %v uses subPath: it would never see the Secret change", md)
		}
		mounts[md.str("name")] = md.str("mountPath")
	}
	var keyFiles map[string]any
	for _, v := range dep.list("spec.template.spec.volumes") {
		vd := asDoc(v)
		if name := vd.str("secret.secretName"); name != "" && mounts[vd.str("name")] != "" {
			keys := find(t, docs, "Secret", name).obj("stringData")
			for file, envName := range map[string]string{"encryption_keys": "ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE", "hash_key": "ENVOY_BFF_SESSION_HASH_KEY_FILE"} {
				if _, ok := keys[file]; ok && env[envName] == mounts[vd.str("name")]+"/"+file {
					if keyFiles == nil {
						keyFiles = map[string]any{}
					}
					keyFiles[envName] = file
				}
			}
		}
	}
	if dep.get("spec.template.spec.securityContext.fsGroup") != dep.get("spec.template.spec.securityContext.runAsGroup") {
		t.Error("without fsGroup = runAsGroup the process cannot read the key files (mode 0440)")
	}
	if len(keyFiles) != 2 {
		t.Errorf("the session key files are not both mounted from a Secret where the environment says (%v)", keyFiles)
	}

	// The Service selects the pods and exposes the ports Envoy and Istio use.
	svc := find(t, docs, "Service", "envoy-bff")
	for k, v := range svc.obj("spec.selector") {
		if dep.obj("spec.template.metadata.labels")[k] != v {
			t.Errorf("service selector %s=%v matches no pod label", k, v)
		}
	}
	for _, p := range svc.list("spec.ports") {
		pm := asDoc(p)
		if _, ok := ports[pm.str("targetPort")]; !ok {
			t.Errorf("service port %v targets no container port", pm)
		}
	}

	// Redis: the URL names its Service, which selects the StatefulSet; AOF on.
	redisSvc := find(t, docs, "Service", "redis")
	if u := mustURL(t, env["ENVOY_BFF_SESSION_REDIS_URL"]); u.Hostname() != redisSvc.str("metadata.name")+"."+ns+".svc.cluster.local" {
		t.Errorf("redis URL host %s is not the redis Service", u.Hostname())
	}
	sts := find(t, docs, "StatefulSet", "redis")
	if !strings.Contains(strings.Join(toStrings(sts.get("spec.template.spec.containers.0.args")), " "), "--appendonly yes") {
		t.Error("redis runs without its append-only file")
	}

	// With valid secrets filled in, the environment is a valid configuration.
	env = withSecrets(t, env)
	env["ENVOY_BFF_OIDC_CLIENT_SECRET"] = "s"
	checkConfig(t, "the Deployment", env)
}

// deploymentEnv is the environment the sample Deployment gives envoy-bff.
func deploymentEnv(t *testing.T) map[string]string {
	t.Helper()
	dep := find(t, readManifests(t, "envoy/k8s/envoy-bff.yaml"), "Deployment", "envoy-bff")
	env := map[string]string{}
	for _, e := range dep.list("spec.template.spec.containers.0.env") {
		em := asDoc(e)
		env[em.str("name")] = em.str("value")
	}
	return env
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

// TestIstioManifests checks the mesh provider, the gateway routes and the
// CUSTOM policy against the envoy-bff Service.
func TestIstioManifests(t *testing.T) {
	t.Parallel()
	k8s := readManifests(t, "envoy/k8s/envoy-bff.yaml")
	svc := find(t, k8s, "Service", "envoy-bff")
	host := svc.str("metadata.name") + "." + svc.str("metadata.namespace") + ".svc.cluster.local"
	svcPorts := map[string]int{}
	for _, p := range svc.list("spec.ports") {
		pm := asDoc(p)
		svcPorts[pm.str("name")], _ = pm["port"].(int)
	}

	mesh := readManifests(t, "envoy/istio/mesh-config.yaml")[0]
	prov := mesh.obj("spec.meshConfig.extensionProviders.0")
	if prov.str("envoyExtAuthzGrpc.service") != host || prov.get("envoyExtAuthzGrpc.port") != svcPorts["grpc"] {
		t.Errorf("extension provider points at %s:%v, want %s:%d", prov.str("envoyExtAuthzGrpc.service"), prov.get("envoyExtAuthzGrpc.port"), host, svcPorts["grpc"])
	}
	if prov.get("envoyExtAuthzGrpc.failOpen") != false || prov.str("envoyExtAuthzGrpc.statusOnError") != "503" {
		t.Error("the provider must fail closed with 503")
	}

	ing := readManifests(t, "envoy/istio/ingress.yaml")
	pol := find(t, ing, "AuthorizationPolicy", "")
	if pol.str("spec.action") != "CUSTOM" || pol.str("spec.provider.name") != prov.str("name") {
		t.Errorf("authorization policy %v does not use provider %s", pol.get("spec"), prov.str("name"))
	}
	gw := find(t, ing, "Gateway", "")
	for k, v := range gw.obj("spec.selector") {
		if pol.obj("spec.selector.matchLabels")[k] != v {
			t.Errorf("the policy does not select the gateway's workload (%s=%v)", k, v)
		}
	}
	if !strings.Contains(strings.Join(toStrings(pol.get("spec.rules.0.to.0.operation.paths")), " "), "/api/") {
		t.Error("the policy does not cover /api/")
	}
	vs := find(t, ing, "VirtualService", "")
	bff := vs.obj("spec.http.0")
	if bff.str("match.0.uri.prefix") != "/bff/" || bff.str("route.0.destination.host") != host || bff.get("route.0.destination.port.number") != svcPorts["http"] {
		t.Errorf("/bff/ routes to %v", bff.get("route"))
	}
	if !strings.Contains(strings.Join(toStrings(vs.get("spec.gateways")), " "), gw.str("metadata.name")) {
		t.Error("the virtual service is not bound to the gateway")
	}

	// A killed pod is ejected at once (T80), whatever the provider cannot retry.
	dr := find(t, readManifests(t, "envoy/istio/destination-rule.yaml"), "DestinationRule", "")
	od := dr.obj("spec.trafficPolicy.outlierDetection")
	if dr.str("spec.host") != host || od.get("consecutiveLocalOriginFailures") != 1 || od.get("splitExternalLocalOriginErrors") != true {
		t.Errorf("destination rule for %s: outlier detection %v", dr.str("spec.host"), od)
	}
	// Envoy outside the mesh must see every pod, not the ClusterIP.
	pods := find(t, k8s, "Service", "envoy-bff-pods")
	if pods.str("spec.clusterIP") != "None" || fmt.Sprint(pods.get("spec.selector")) != fmt.Sprint(svc.get("spec.selector")) || fmt.Sprint(pods.get("spec.ports")) != fmt.Sprint(svc.get("spec.ports")) {
		t.Errorf("headless Service envoy-bff-pods does not mirror envoy-bff: %v", pods.get("spec"))
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
