package envoy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRender(t *testing.T) {
	t.Parallel()
	p := Ports{ListenPort: 10000, AdminPort: 9901, BFFGRPCPorts: []int{9001, 9011}, BFFHTTPPorts: []int{9002, 9012}, APIPort: 9101, SPAPort: 9102}
	raw, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	for _, want := range []string{
		"port_value: 10000", "port_value: 9011", "port_value: 9012",
		"failure_mode_allow: false",
		"status_on_error: { code: ServiceUnavailable }",
		"headers_with_underscores_action: REJECT_REQUEST",
		"bff.policy: user",
		"timeout: 5s",
		// A killed replica costs no check (T80): room for every retry, ejection.
		"min_retry_concurrency: 1024",
		"consecutive_local_origin_failure: 1",
		// Realtime routes: WebSocket upgrades, no timeout cutting a stream.
		"upgrade_type: websocket",
		`match: { path: "/api/ws" }`,
		`match: { path: "/api/events" }`,
		"route: { cluster: api, timeout: 0s }",
		`bff.realtime: "true"`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("rendered config lacks %q", want)
		}
	}
	for _, bad := range []string{"partner", "/partner", "/", `/a"b/`} {
		if _, err := Render(Ports{ListenPort: 1, BFFGRPCPorts: []int{1}, BFFHTTPPorts: []int{2}, AppPrefixes: []string{bad}}); err == nil {
			t.Errorf("app prefix %q accepted", bad)
		}
	}
	for _, bad := range []APIRoute{{Name: "Orders", Port: 1}, {Name: "a/b", Port: 1}, {Name: "", Port: 1}, {Name: "bff", Port: 1},
		{Name: "api", Port: 1}, {Name: "bench-floor", Port: 1}, {Name: "partner", Port: 1}, {Name: "orders", Port: 0}} {
		p := Ports{ListenPort: 1, BFFGRPCPorts: []int{1}, BFFHTTPPorts: []int{2}, AppPrefixes: []string{"/partner/"}, APIRoutes: []APIRoute{bad}}
		if _, err := Render(p); err == nil {
			t.Errorf("API route %+v accepted", bad)
		}
	}
	if _, err := Render(Ports{ListenPort: 1, BFFGRPCPorts: []int{1}, BFFHTTPPorts: []int{2},
		APIRoutes: []APIRoute{{Name: "orders", Port: 1}, {Name: "orders", Port: 2}}}); err == nil {
		t.Error("duplicate API route accepted")
	}
	if _, err := Render(Ports{ListenPort: 1}); err == nil {
		t.Error("a config without replicas must be refused")
	}
	if _, err := Render(Ports{ListenPort: 1, BFFGRPCPorts: []int{1}, BFFHTTPPorts: []int{2}, TLSCertFile: "cert.pem"}); err == nil {
		t.Error("a TLS certificate without a key must be refused")
	}
	if strings.Contains(cfg, "DownstreamTlsContext") {
		t.Error("a listener without TLS files has a TLS context")
	}
}

// TestEnvoyAcceptsConfig has the real Envoy validate the rendered config, so
// a typo in the template fails here rather than at `make run`.
func TestEnvoyAcceptsConfig(t *testing.T) {
	t.Parallel()
	bin := os.Getenv("ENVOY_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("envoy"); err != nil {
			t.Fatal("Envoy not found: set ENVOY_BIN or run `make bootstrap` (this test never skips)")
		}
	}
	// With a frontend under its own prefix, two more APIs (one of them
	// named like a YAML number) and the benchmark's floor routes, so their
	// routes, clusters and filters are checked too.
	raw, err := Render(Ports{ListenPort: 10000, AdminPort: 9901, BFFGRPCPorts: []int{9001}, BFFHTTPPorts: []int{9002}, APIPort: 9101, SPAPort: 9102,
		AppPrefixes: []string{"/partner/"}, APIRoutes: []APIRoute{{Name: "orders", Port: 9103}, {Name: "2024", Port: 9104}, {Name: "gold", Port: 9105, PathRules: true}},
		BenchFloorRoute: true, BenchNoopAuthzPort: 9106})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `prefix: "/partner/bff/"`) || !strings.Contains(string(raw), `prefix: "/partner/api/"`) {
		t.Fatal("the /partner/ frontend's routes are missing")
	}
	for _, want := range []string{`prefix: "/orders/"`, "cluster: api_orders,", `bff.token: "orders"`, "port_value: 9103",
		`prefix: "/2024/"`, "cluster: api_2024,", `bff.token: "2024"`, "port_value: 9104",
		`prefix: "/gold/"`, "cluster: api_gold,", "port_value: 9105"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the extra APIs' config lacks %q", want)
		}
	}
	// The path-rules route carries no context extensions of its own.
	if _, gold, _ := strings.Cut(string(raw), `prefix: "/gold/"`); strings.Contains(strings.SplitN(gold, "- match:", 2)[0], "context_extensions") {
		t.Error("the /gold/ route (PathRules) has context extensions")
	}
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "--mode", "validate", "-c", path).CombinedOutput()
	if err != nil {
		t.Fatalf("envoy --mode validate: %v\n%s", err, out)
	}

	// The HTTPS listener, with a certificate Envoy really loads.
	certFile, keyFile := writeSelfSigned(t)
	raw, err = Render(Ports{ListenPort: 10000, AdminPort: 9901, BFFGRPCPorts: []int{9001}, BFFHTTPPorts: []int{9002}, APIPort: 9101, SPAPort: 9102,
		TLSCertFile: certFile, TLSKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "DownstreamTlsContext") {
		t.Fatal("the TLS listener has no DownstreamTlsContext")
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), bin, "--mode", "validate", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("envoy --mode validate (TLS): %v\n%s", err, out)
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key as PEM files.
func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "envoy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
