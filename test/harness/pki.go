package harness

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI is a certificate authority made for one test: its CA certificate and
// the certificates it issues live only in Dir, and nothing trusts them
// unless told to (Keycloak's truststore, envoy-bff's oidc.ca_file,
// Chromium's SPKI list).
type PKI struct {
	// Dir holds the PEM files.
	Dir string
	// CAFile is the CA certificate (PEM).
	CAFile string
	// CA is the CA certificate.
	CA *x509.Certificate

	key crypto.Signer
}

// Cert is a certificate the PKI issued, with its key, as files and parsed.
type Cert struct {
	// CertFile and KeyFile are PEM: the certificate, and its PKCS#8 key.
	CertFile, KeyFile string
	// Leaf is the certificate.
	Leaf *x509.Certificate
	// TLS is the pair for a Go TLS client or server.
	TLS tls.Certificate
}

// Thumbprint is the base64url SHA-256 of the certificate's DER: RFC 8705's
// x5t#S256, which an mTLS-bound token carries in cnf.
func (c Cert) Thumbprint() string {
	sum := sha256.Sum256(c.Leaf.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// SPKIHash is the base64 SHA-256 of the certificate's public key info, the
// form Chromium's --ignore-certificate-errors-spki-list takes.
func (c Cert) SPKIHash() string {
	sum := sha256.Sum256(c.Leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// NewPKI makes a CA (ECDSA P-256, valid for a day) and writes its
// certificate to dir/ca.pem.
func NewPKI(dir string) (*PKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "envoy-bff test CA", Organization: []string{"envoy-bff tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, CAFile: filepath.Join(dir, "ca.pem"), CA: ca, key: key}
	if err := writePEM(p.CAFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// Pool is a certificate pool holding only the CA.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA)
	return pool
}

// ClientTLS is a TLS client config that trusts only the CA and presents
// client when it is not nil.
func (p *PKI) ClientTLS(client *Cert) *tls.Config {
	c := &tls.Config{RootCAs: p.Pool(), MinVersion: tls.VersionTLS12}
	if client != nil {
		c.Certificates = []tls.Certificate{client.TLS}
	}
	return c
}

// Server issues a server certificate for 127.0.0.1, ::1, localhost and
// hosts, written to dir/<name>.pem and dir/<name>-key.pem.
func (p *PKI) Server(name string, hosts ...string) (Cert, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:    []string{"localhost"},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return p.issue(name, tmpl)
}

// Client issues a client certificate (RFC 8705 tls_client_auth and
// certificate-bound tokens) with subject CN=cn, O=envoy-bff tests, written
// to dir/<name>.pem and dir/<name>-key.pem.
func (p *PKI) Client(name, cn string) (Cert, error) {
	return p.issue(name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"envoy-bff tests"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// issue completes tmpl (serial, validity, key usage), signs it with a new
// P-256 key and writes both files.
func (p *PKI) issue(name string, tmpl *x509.Certificate) (Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Cert{}, fmt.Errorf("pki: generate key for %s: %w", name, err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, key.Public(), p.key)
	if err != nil {
		return Cert{}, fmt.Errorf("pki: sign %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return Cert{}, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Cert{}, err
	}
	c := Cert{
		CertFile: filepath.Join(p.Dir, name+".pem"),
		KeyFile:  filepath.Join(p.Dir, name+"-key.pem"),
		Leaf:     leaf,
		TLS:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
	}
	if err := writePEM(c.CertFile, "CERTIFICATE", der, 0o644); err != nil {
		return Cert{}, err
	}
	if err := writePEM(c.KeyFile, "PRIVATE KEY", pkcs8, 0o600); err != nil {
		return Cert{}, err
	}
	return c, nil
}

// serial is a random 128-bit certificate serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}
