package oidcflow

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// errNoCACertificate means oidc.ca_file holds no PEM certificate.
var errNoCACertificate = errors.New("no PEM certificate in it")

// ProviderTransport is the base transport for every call to the provider
// (discovery, keys, token, PAR, revocation, UserInfo): Go's default one,
// and when CAFile is set, one trusting only the certificates in that file,
// for a provider behind a private CA. An unreadable file is an error
// naming the field.
func (c Config) ProviderTransport() (http.RoundTripper, error) {
	if c.CAFile == "" {
		return http.DefaultTransport, nil
	}
	pool, err := loadCAPool(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}

// loadCAPool reads a PEM file of CA certificates into a pool of its own
// (not added to the system's: the file decides whom envoy-bff trusts).
func loadCAPool(path string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("%s: %w", path, errNoCACertificate)
	}
	return pool, nil
}
