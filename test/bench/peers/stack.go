package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// OAuth2ProxyVersion is the oauth2-proxy release measured (test/bootstrap.sh
// installs it into .tools/bin).
const OAuth2ProxyVersion = "v7.15.6"

// The peers' clients at the local provider.
const (
	proxyClientID  = "oauth2-proxy"
	filterClientID = "envoy-oauth2-filter"
)

//go:embed envoy.yaml.tmpl
var envoyTemplate string

// stacks are every process of one run: Redis, envoy-bff behind the
// repository's Envoy config (harness), oauth2-proxy, and the peers' Envoy.
type stacks struct {
	redis *harness.Process
	bff   *harness.Stack
	proxy *harness.Process
	envoy *harness.Process

	// proxyURL is oauth2-proxy's listener; extAuthzURL and filterURL the
	// peers' Envoy's two listeners.
	proxyURL, extAuthzURL, filterURL string
}

// close stops everything that started, the peers first.
func (s *stacks) close() {
	if s.envoy != nil {
		s.envoy.Stop(5 * time.Second)
	}
	if s.proxy != nil {
		s.proxy.Stop(5 * time.Second)
	}
	if s.bff != nil {
		s.bff.Close()
	}
	if s.redis != nil {
		s.redis.Stop(5 * time.Second)
	}
}

// startStacks brings every part up; on error it stops what it started.
func startStacks(ctx context.Context, dir, proxyBin string) (_ *stacks, err error) {
	if err := checkProxyBinary(proxyBin); err != nil {
		return nil, err
	}
	s := &stacks{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	redisProc, redisAddr, err := harness.StartRedis(ctx, dir)
	if err != nil {
		return nil, err
	}
	s.redis = redisProc

	// The peers' ports are known before the provider starts, so their
	// redirect URIs can be registered with it.
	ports, err := harness.FreePorts(4)
	if err != nil {
		return nil, err
	}
	proxyPort, extAuthzPort, filterPort, adminPort := ports[0], ports[1], ports[2], ports[3]
	s.proxyURL = "http://127.0.0.1:" + strconv.Itoa(proxyPort)
	s.extAuthzURL = "http://127.0.0.1:" + strconv.Itoa(extAuthzPort)
	s.filterURL = "http://127.0.0.1:" + strconv.Itoa(filterPort)
	proxySecret, filterSecret, hmacSecret, cookieSecret := randomHex(16), randomHex(16), randomHex(32), randomHex(16)

	s.bff, err = harness.Start(ctx, harness.Options{
		Dir: dir, RedisURL: "redis://" + redisAddr + "/0", BenchFloorRoute: true,
		// Long enough that no session needs a refresh during the run.
		AccessTokenTTL: time.Hour,
		Provider: func(c *oidctest.ProviderConfig) {
			c.IDTokenTTL = time.Hour
			c.Clients = append(c.Clients,
				oidctest.Client{ID: proxyClientID, Secret: proxySecret, RedirectURIs: []string{s.proxyURL + "/oauth2/callback"}},
				oidctest.Client{ID: filterClientID, Secret: filterSecret, RedirectURIs: []string{s.filterURL + "/callback"}})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start envoy-bff's stack: %w", err)
	}

	// oauth2-proxy: the oidc provider against the same local provider,
	// sessions in the same Redis (its own database), PKCE, and the access
	// token handed back in X-Auth-Request-Access-Token.
	args := []string{
		"--http-address=127.0.0.1:" + strconv.Itoa(proxyPort),
		"--provider=oidc", "--oidc-issuer-url=" + s.bff.IssuerURL,
		"--client-id=" + proxyClientID, "--client-secret=" + proxySecret,
		"--redirect-url=" + s.proxyURL + "/oauth2/callback",
		"--scope=openid profile email", "--code-challenge-method=S256",
		"--email-domain=*", "--cookie-secret=" + cookieSecret, "--cookie-secure=false",
		"--session-store-type=redis", "--redis-connection-url=redis://" + redisAddr + "/1",
		"--upstream=static://200", "--skip-provider-button",
		"--set-xauthrequest", "--pass-access-token",
		// envoy-bff writes no line for an allowed check; neither does this.
		"--request-logging=false",
	}
	if s.proxy, err = harness.StartProcess("oauth2-proxy", dir, proxyBin, args, nil); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := harness.WaitHTTP(wctx, s.proxy, s.proxyURL+"/ping", http.StatusOK); err != nil {
		return nil, fmt.Errorf("oauth2-proxy: %w", err)
	}

	authz, token, err := providerEndpoints(ctx, s.bff.IssuerURL)
	if err != nil {
		return nil, err
	}
	api, err := url.Parse(s.bff.APIURL)
	if err != nil {
		return nil, fmt.Errorf("parse API URL: %w", err)
	}
	iss, err := url.Parse(s.bff.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("parse issuer: %w", err)
	}
	cfg, err := renderEnvoy(envoyView{
		AdminPort: adminPort, ExtAuthzPort: extAuthzPort, OAuth2Port: filterPort,
		OAuth2ProxyPort: proxyPort, APIPort: atoi(api.Port()), ProviderPort: atoi(iss.Port()),
		TokenEndpoint: token, AuthorizationEndpoint: authz,
		ClientID: filterClientID, ClientSecret: filterSecret, HMACSecret: hmacSecret,
	})
	if err != nil {
		return nil, err
	}
	if s.envoy, err = startEnvoy(ctx, dir, cfg, adminPort); err != nil {
		return nil, err
	}
	return s, nil
}

// checkProxyBinary fails unless bin is the oauth2-proxy release measured,
// by its Go build information (the module and version go install built).
func checkProxyBinary(bin string) error {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("oauth2-proxy %s missing or unreadable at %s (run `make bootstrap`): %w", OAuth2ProxyVersion, bin, err)
	}
	if info.Main.Path != "github.com/oauth2-proxy/oauth2-proxy/v7" || info.Main.Version != OAuth2ProxyVersion {
		return fmt.Errorf("%s is %s %s, want github.com/oauth2-proxy/oauth2-proxy/v7 %s (run `make bootstrap`)", bin, info.Main.Path, info.Main.Version, OAuth2ProxyVersion)
	}
	return nil
}

// envoyView is what envoy.yaml.tmpl sees.
type envoyView struct {
	AdminPort, ExtAuthzPort, OAuth2Port, OAuth2ProxyPort, APIPort, ProviderPort int
	TokenEndpoint, AuthorizationEndpoint                                        string
	ClientID, ClientSecret, HMACSecret                                          string
}

// renderEnvoy fills the peers' Envoy config.
func renderEnvoy(v envoyView) ([]byte, error) {
	t, err := template.New("envoy").Option("missingkey=error").Parse(envoyTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse peers' Envoy template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("render peers' Envoy config: %w", err)
	}
	return b.Bytes(), nil
}

// startEnvoy runs $ENVOY_BIN with cfg as harness.StartEnvoy runs the
// repository's config (same concurrency), and waits until it is ready.
func startEnvoy(ctx context.Context, dir string, cfg []byte, adminPort int) (*harness.Process, error) {
	bin := os.Getenv("ENVOY_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("envoy"); err != nil {
			return nil, fmt.Errorf("envoy not found (set ENVOY_BIN or put it on PATH; `make bootstrap` installs it into .tools): %w", err)
		}
	}
	path := filepath.Join(dir, "envoy-peers.yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, fmt.Errorf("write peers' Envoy config: %w", err)
	}
	args := []string{"-c", path, "--log-level", "warn", "--base-id", strconv.Itoa(adminPort),
		"--concurrency", "2", "--disable-hot-restart"}
	p, err := harness.StartProcess("envoy-peers", dir, bin, args, nil)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := harness.WaitHTTP(wctx, p, "http://127.0.0.1:"+strconv.Itoa(adminPort)+"/ready", http.StatusOK); err != nil {
		p.Stop(time.Second)
		return nil, fmt.Errorf("peers' Envoy: %w", err)
	}
	return p, nil
}

// providerEndpoints reads the provider's authorization and token endpoints
// from its discovery document.
func providerEndpoints(ctx context.Context, issuer string) (authz, token string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", "", fmt.Errorf("build discovery request: %w", err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", "", fmt.Errorf("read discovery: %w", err)
	}
	defer resp.Body.Close()
	var d struct {
		Authz string `json:"authorization_endpoint"`
		Token string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return "", "", fmt.Errorf("decode discovery: %w", err)
	}
	if d.Authz == "" || d.Token == "" {
		return "", "", errors.New("discovery lacks the authorization or token endpoint")
	}
	return d.Authz, d.Token, nil
}

// randomHex is n random bytes in hex (2n characters).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// atoi is strconv.Atoi for ports read from URLs this program built.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
