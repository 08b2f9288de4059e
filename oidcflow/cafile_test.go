package oidcflow

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCAFile: oidc.ca_file decides whom envoy-bff trusts for the provider's
// TLS; a missing or certificate-less file is a config error naming the field.
func TestCAFile(t *testing.T) {
	t.Parallel()
	provider := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(provider.Close)
	// httptest's servers share one certificate: the other one gets its own.
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	other.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	other.StartTLS()
	t.Cleanup(other.Close)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	providerCA := write("provider-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: provider.Certificate().Raw}))
	notPEM := write("not-pem.pem", []byte("-----BEGIN PRIVATE KEY-----\nnot a certificate\n"))

	for _, tc := range []struct {
		name    string
		caFile  string
		wantErr string // from Validate and ProviderTransport
		// trusted and refused are the servers the transport must reach or not.
		trusted, refused []*httptest.Server
	}{
		{name: "unset_uses_the_system_roots", caFile: "", refused: []*httptest.Server{provider, other}},
		{name: "file_trusts_only_its_CAs", caFile: providerCA, trusted: []*httptest.Server{provider}, refused: []*httptest.Server{other}},
		{name: "missing_file", caFile: filepath.Join(dir, "absent.pem"), wantErr: "ca_file: read CA certificates:"},
		{name: "no_certificate", caFile: notPEM, wantErr: "ca_file: " + notPEM + ": no PEM certificate in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			c.CAFile = tc.caFile
			verr := c.Validate()
			rt, terr := c.ProviderTransport()
			if tc.wantErr != "" {
				if verr == nil || !strings.Contains(verr.Error(), tc.wantErr) {
					t.Errorf("Validate: %v, want %q", verr, tc.wantErr)
				}
				if terr == nil || !strings.Contains(terr.Error(), tc.wantErr) {
					t.Errorf("ProviderTransport: %v, want %q", terr, tc.wantErr)
				}
				if strings.Contains(tc.wantErr, "no PEM") && !errors.Is(terr, errNoCACertificate) {
					t.Errorf("ProviderTransport: %v is not errNoCACertificate", terr)
				}
				return
			}
			if verr != nil || terr != nil {
				t.Fatalf("Validate: %v, ProviderTransport: %v", verr, terr)
			}
			client := &http.Client{Transport: rt}
			for _, s := range tc.trusted {
				resp, err := client.Get(s.URL)
				if err != nil {
					t.Fatalf("GET %s: %v", s.URL, err)
				}
				resp.Body.Close()
			}
			for _, s := range tc.refused {
				if resp, err := client.Get(s.URL); err == nil {
					resp.Body.Close()
					t.Fatalf("GET %s succeeded: its certificate is not trusted", s.URL)
				} else if !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("GET %s: %v, want a certificate error", s.URL, err)
				}
			}
		})
	}
}

// selfSigned is a certificate for 127.0.0.1 that nothing trusts.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
