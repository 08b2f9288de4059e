package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/envoy-bff/envoy-bff/envoy"
	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/test/sampleapi"
	"github.com/envoy-bff/envoy-bff/test/spa"
)

// Client credentials the stack registers at the local provider for envoy-bff.
const (
	ClientID     = "envoy-bff"
	ClientSecret = "envoy-bff-demo-secret"
)

// Options shapes one stack.
type Options struct {
	// Dir holds configs and logs (required).
	Dir string
	// Replicas is the number of envoy-bff processes (default 1).
	Replicas int
	// Redis starts a redis-server for the stack and uses the Redis backend.
	Redis bool
	// RedisURL uses an existing Redis instead (implies the Redis backend).
	RedisURL string
	// ListenPort is Envoy's port on 127.0.0.1 (0: a free one, reserved
	// until Envoy binds it).
	ListenPort int
	// Listen, when set, is a reservation of Envoy's port that Start
	// releases once Envoy has bound it (ListenPort is then ignored).
	Listen *Reservation
	// AccessTokenTTL is the provider's access-token lifetime (default 5m).
	AccessTokenTTL time.Duration
	// Provider adjusts the provider's config before it starts.
	Provider func(*oidctest.ProviderConfig)
	// BenchFloorRoute adds Envoy's /bench-floor/ route (the API without ext_authz).
	BenchFloorRoute bool
	// BenchNoopAuthzPort adds Envoy's /bench-noop-authz/ route, checked by
	// the no-op ext_authz server on this port (envoy.Ports).
	BenchNoopAuthzPort int
	// Issuer, when set, is an external OpenID provider (Keycloak) used
	// instead of the local one; ClientID and ClientSecret are envoy-bff's there.
	Issuer, ClientID, ClientSecret string
	// BFFConfig adjusts each replica's config document before it starts.
	BFFConfig func(map[string]any)
	// Frontends, when set, makes the replicas serve these apps (the config's
	// `frontends:`), each its own client of the stack's provider (the local
	// one, or Issuer) unless it names its own Issuer, instead of the one app
	// of the top-level oidc section.
	Frontends []Frontend
	// SilentLogin makes the sample page try a silent login (prompt=none)
	// when a load finds no session, and the local provider remember the
	// browser (oidctest.ProviderConfig.BrowserSessions), as a real one does,
	// so that a silent login without a session there is login_required.
	SilentLogin bool
	// APIs are further sample APIs, name → audience: each is built for its
	// audience (it serves only tokens whose aud contains it, 401 otherwise;
	// "" for no check) and served by Envoy at /<name>/ (as /api/ there),
	// checked with policy `user` and token profile <name> (context extension
	// bff.token), so envoy-bff's config needs a profile of that name. With
	// the local provider, each audience is registered for token exchange
	// (ProviderConfig.Audiences, no scopes) and the stack's clients may
	// exchange (Client.TokenExchange); Provider can change both.
	APIs map[string]string
	// ProviderMTLS makes the local provider also serve its RFC 8705 mTLS
	// endpoint aliases (oidctest.Provider.StartMTLS, for tls_client_auth);
	// the replicas trust its certificate (SSL_CERT_FILE).
	ProviderMTLS bool
	// PathRuleAPIs names APIs of APIs whose Envoy route carries no context
	// extensions: envoy-bff's authz.path_rules decide their policy, token
	// profile and requirements (the config needs a rule for /<name>/).
	PathRuleAPIs []string
	// TLS, when set, makes Envoy's browser listener serve HTTPS with a
	// certificate from this PKI (for 127.0.0.1, localhost and the
	// frontends' hosts), and every envoy-bff oidc section trust its CA
	// (oidc.ca_file): the PKI of a Keycloak started with KeycloakOptions.TLS.
	// FAPI 2.0 profiles accept only https redirect URIs.
	TLS *PKI
	// APITap, when set, sees every request that reaches the sample API
	// behind /api/ before the API answers it (to record what Envoy
	// forwarded, such as a DPoP proof, and replay it at Stack.APIURL).
	APITap func(*http.Request)
}

// Frontend is one app of a multi-frontend stack.
type Frontend struct {
	// Name is the frontend's name in envoy-bff's config.
	Name string
	// Host is the host it is served on: "localhost" and "127.0.0.1" are
	// two hosts to a browser and both resolve everywhere (Go, Java,
	// Chromium), so tests need no name service.
	Host string
	// PathPrefix is its prefix (default "/"); Envoy gets routes for its
	// browser endpoints and its API under it.
	PathPrefix string
	// Cookie is its session cookie's name (default __Host-bff-<name>).
	Cookie string
	// ClientID is its client at the provider (default envoy-bff-<name>).
	ClientID string
	// Later registers it at the provider and gives it Envoy's routes but
	// leaves it out of envoy-bff's config at start: a test adds it by a
	// config reload (Stack.FrontendDoc, BFF.Reload). Its Host may then be
	// a name nothing resolves (to prove a host no frontend served before);
	// the test dials 127.0.0.1 for it.
	Later bool
	// Issuer, when set, is its own OpenID provider (a Keycloak realm, say),
	// where ClientID must already exist; empty means the stack's provider,
	// which for the local one registers ClientID.
	Issuer string
	// ClientSecret is ClientID's secret (default the package's ClientSecret,
	// which the local provider is given).
	ClientSecret string
}

// secret is f's client secret.
func (f Frontend) secret() string {
	if f.ClientSecret == "" {
		return ClientSecret
	}
	return f.ClientSecret
}

// Prefix is f's path prefix, "/" when unset.
func (f Frontend) Prefix() string { return f.prefix() }

// prefix is f's path prefix, "/" when unset.
func (f Frontend) prefix() string {
	if f.PathPrefix == "" {
		return "/"
	}
	return f.PathPrefix
}

// CookieName is f's session cookie.
func (f Frontend) CookieName() string {
	if f.Cookie == "" {
		return "__Host-bff-" + f.Name
	}
	return f.Cookie
}

// Client is f's client ID at the provider.
func (f Frontend) Client() string {
	if f.ClientID == "" {
		return "envoy-bff-" + f.Name
	}
	return f.ClientID
}

// URL is where a browser opens f: Envoy's port on f's host, with its prefix.
func (f Frontend) URL(s *Stack) string {
	return s.scheme() + "://" + f.Host + ":" + strconv.Itoa(s.Port) + strings.TrimSuffix(f.prefix(), "/")
}

// BFFPath is f's browser endpoint path prefix (<path_prefix>bff).
func (f Frontend) BFFPath() string { return f.prefix() + "bff" }

// Stack is a running deployment: Envoy in front of envoy-bff replicas, the
// provider, the sample API and SPA, and maybe redis-server.
type Stack struct {
	// URL is Envoy's listener: what a browser opens.
	URL string
	// Port is Envoy's listener port.
	Port int
	// Frontends are the apps of a multi-frontend stack (Options.Frontends).
	Frontends []Frontend
	// APIs are the extra sample APIs by name (Options.APIs), for their Stats.
	APIs map[string]*sampleapi.API
	// APIURL is the sample API behind /api/, reached directly (not through Envoy).
	APIURL string
	// IssuerURL is the local provider's issuer.
	IssuerURL string
	// Provider is the local OpenID provider (in this process).
	Provider *oidctest.Provider
	// Envoy is the Envoy process.
	Envoy *Envoy
	// BFFs are the envoy-bff replicas.
	BFFs []*BFF
	// Redis is the redis-server process, if the stack started one.
	Redis *Process
	// RedisURL is the Redis the replicas use, if any.
	RedisURL string
	// EncryptionKey and HashKey are the replicas' shared session keys
	// (base64), so a test can open the store as a replica would.
	EncryptionKey, HashKey string

	// TLS is the PKI of Options.TLS, and EnvoyCert Envoy's certificate
	// from it (a browser trusts it by its SPKIHash).
	TLS       *PKI
	EnvoyCert Cert

	servers []*http.Server
	bffEnv  []string // added to every replica's environment
	mu      sync.Mutex
	closed  bool
	exited  chan string
}

// Start brings a stack up and waits until every part is ready. On error
// everything already started is stopped.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.Dir == "" {
		return nil, errors.New("harness: Options.Dir is required")
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	s := &Stack{exited: make(chan string, 16)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	// Hold Envoy's port from now until Envoy binds it: starting the replicas
	// takes long enough for another test process to be handed it.
	listen := o.Listen
	if listen == nil && o.ListenPort == 0 {
		if listen, err = ReservePort(); err != nil {
			return nil, err
		}
	}
	listenPort := o.ListenPort
	if listen != nil {
		defer listen.Release()
		listenPort = listen.Port
	}
	s.Port, s.Frontends, s.TLS = listenPort, o.Frontends, o.TLS
	s.URL = s.scheme() + "://127.0.0.1:" + strconv.Itoa(listenPort)

	if o.Redis {
		p, addr, err := StartRedis(ctx, o.Dir)
		if err != nil {
			return nil, err
		}
		s.Redis = p
		s.RedisURL = "redis://" + addr + "/0"
	} else if o.RedisURL != "" {
		s.RedisURL = o.RedisURL
	}

	if o.Issuer != "" {
		s.IssuerURL = o.Issuer
	} else if err := s.startProvider(o); err != nil {
		return nil, err
	}

	api, err := s.sampleAPI()
	if err != nil {
		return nil, err
	}
	if tap := o.APITap; tap != nil {
		inner := api
		api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tap(r); inner.ServeHTTP(w, r) })
	}
	apiPort, err := s.serve(api)
	if err != nil {
		return nil, err
	}
	s.APIURL = fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	var apiRoutes []envoy.APIRoute
	s.APIs = map[string]*sampleapi.API{}
	for _, name := range o.PathRuleAPIs {
		if _, ok := o.APIs[name]; !ok {
			return nil, fmt.Errorf("harness: PathRuleAPIs names %q, which APIs lacks", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.APIs)) {
		a, err := sampleapi.New(sampleapi.Config{Issuer: s.IssuerURL, Audience: o.APIs[name]})
		if err != nil {
			return nil, fmt.Errorf("build sample API %s: %w", name, err)
		}
		port, err := s.serve(a.Handler())
		if err != nil {
			return nil, err
		}
		s.APIs[name] = a
		apiRoutes = append(apiRoutes, envoy.APIRoute{Name: name, Port: port, PathRules: slices.Contains(o.PathRuleAPIs, name)})
	}
	// The page names its frontend on that frontend's host and path prefix,
	// and under a prefix calls that frontend's endpoints.
	var apps []spa.App
	var prefixes []string
	if len(o.Frontends) == 0 && o.SilentLogin {
		apps = append(apps, spa.App{Name: "Sample app", SilentLogin: true})
	}
	for _, f := range o.Frontends {
		apps = append(apps, spa.App{Host: f.Host, Name: f.Name, PathPrefix: f.prefix(), SilentLogin: o.SilentLogin})
		if p := f.prefix(); p != "/" {
			prefixes = append(prefixes, p)
		}
	}
	spaPort, err := s.serve(spa.Handler(apps...))
	if err != nil {
		return nil, err
	}

	encKey, hashKey, err := NewKeys()
	if err != nil {
		return nil, err
	}
	s.EncryptionKey, s.HashKey = encKey, hashKey
	ports := envoy.Ports{ListenPort: listenPort, APIPort: apiPort, SPAPort: spaPort, BenchFloorRoute: o.BenchFloorRoute, BenchNoopAuthzPort: o.BenchNoopAuthzPort, AppPrefixes: prefixes}
	ports.APIRoutes = apiRoutes
	if o.TLS != nil {
		var hosts []string
		for _, f := range o.Frontends {
			hosts = append(hosts, f.Host)
		}
		if s.EnvoyCert, err = o.TLS.Server("envoy", hosts...); err != nil {
			return nil, err
		}
		ports.TLSCertFile, ports.TLSKeyFile = s.EnvoyCert.CertFile, s.EnvoyCert.KeyFile
	}
	for i := range o.Replicas {
		doc := BFFConfigDoc(s.IssuerURL, s.URL, s.RedisURL, encKey, hashKey)
		if o.Issuer != "" {
			oidc := doc["oidc"].(map[string]any)
			oidc["client_id"], oidc["client_secret"] = o.ClientID, o.ClientSecret
		}
		if o.TLS != nil {
			doc["oidc"].(map[string]any)["ca_file"] = o.TLS.CAFile
		}
		if len(o.Frontends) > 0 {
			delete(doc, "oidc")
			doc["frontends"] = s.frontendsDoc()
		}
		if o.BFFConfig != nil {
			o.BFFConfig(doc)
		}
		b, err := StartBFF(ctx, BFFOptions{Dir: o.Dir, Name: "envoy-bff-" + strconv.Itoa(i+1), Config: doc, Env: s.bffEnv})
		if err != nil {
			return nil, err
		}
		s.BFFs = append(s.BFFs, b)
		ports.BFFGRPCPorts = append(ports.BFFGRPCPorts, b.GRPCPort)
		ports.BFFHTTPPorts = append(ports.BFFHTTPPorts, b.HTTPPort)
	}
	for _, b := range s.BFFs {
		if err := b.WaitReady(ctx); err != nil {
			return nil, err
		}
	}
	if s.Envoy, err = StartEnvoy(ctx, o.Dir, ports); err != nil {
		return nil, err
	}
	s.watch()
	return s, nil
}

// frontendsDoc is the `frontends:` section of a multi-frontend stack at
// start (every frontend but the Later ones).
func (s *Stack) frontendsDoc() []any {
	var out []any
	for _, f := range s.Frontends {
		if !f.Later {
			out = append(out, s.FrontendDoc(f))
		}
	}
	return out
}

// scheme is the browser listener's: https with Options.TLS.
func (s *Stack) scheme() string {
	if s.TLS != nil {
		return "https"
	}
	return "http"
}

// FrontendDoc is f's item of the `frontends:` section, as the stack
// configures it (a test adds a Later frontend to a replica's config with it).
func (s *Stack) FrontendDoc(f Frontend) map[string]any {
	doc := s.frontendDoc(f)
	if s.TLS != nil {
		doc["oidc"].(map[string]any)["ca_file"] = s.TLS.CAFile
	}
	return doc
}

func (s *Stack) frontendDoc(f Frontend) map[string]any {
	return map[string]any{
		"name":        f.Name,
		"hosts":       []any{f.Host},
		"path_prefix": f.prefix(),
		"session":     map[string]any{"cookie": map[string]any{"name": f.CookieName()}},
		"oidc": map[string]any{
			"issuer":                   s.issuer(f),
			"client_id":                f.Client(),
			"client_secret":            f.secret(),
			"redirect_url":             f.URL(s) + "/bff/callback",
			"post_logout_redirect_url": f.URL(s) + "/",
		},
		"authz": map[string]any{"path_rules": []any{map[string]any{"prefix": f.prefix() + "api/", "policy": "user"}}},
	}
}

// issuer is f's provider: its own, or the stack's.
func (s *Stack) issuer(f Frontend) string {
	if f.Issuer != "" {
		return f.Issuer
	}
	return s.IssuerURL
}

// sampleAPI is the API behind Envoy: one sample API per provider of the
// stack's apps, each request going to the one its bearer token names as
// issuer (read unverified here; that API verifies the token whole), else
// to the stack's own provider's.
func (s *Stack) sampleAPI() (http.Handler, error) {
	apis := map[string]http.Handler{}
	own := strings.TrimSuffix(s.IssuerURL, "/")
	for _, iss := range append([]string{s.IssuerURL}, s.frontendIssuers()...) {
		iss = strings.TrimSuffix(iss, "/")
		if apis[iss] != nil {
			continue
		}
		api, err := sampleapi.New(sampleapi.Config{Issuer: iss})
		if err != nil {
			return nil, fmt.Errorf("build sample API for %s: %w", iss, err)
		}
		apis[iss] = api.Handler()
	}
	if len(apis) == 1 {
		return apis[own], nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := apis[bearerIssuer(r.Header.Get("Authorization"))]; h != nil {
			h.ServeHTTP(w, r)
			return
		}
		apis[own].ServeHTTP(w, r)
	}), nil
}

// frontendIssuers are the providers frontends name themselves.
func (s *Stack) frontendIssuers() []string {
	var out []string
	for _, f := range s.Frontends {
		if f.Issuer != "" {
			out = append(out, f.Issuer)
		}
	}
	return out
}

// bearerIssuer is the unverified iss of a "Bearer <JWT>" header; "" if none.
func bearerIssuer(auth string) string {
	scheme, raw, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "DPoP") {
		return ""
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return ""
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return ""
	}
	return strings.TrimSuffix(c.Issuer, "/")
}

// startProvider runs the local OpenID provider for the stack.
func (s *Stack) startProvider(o Options) error {
	pcfg := oidctest.ProviderConfig{
		AccessTokenTTL:  o.AccessTokenTTL,
		BrowserSessions: o.SilentLogin,
		Clients: []oidctest.Client{{
			ID:                     ClientID,
			Secret:                 ClientSecret,
			RedirectURIs:           []string{s.URL + "/bff/callback"},
			PostLogoutRedirectURIs: []string{s.URL + "/"},
			BackchannelLogoutURI:   s.URL + "/bff/backchannel-logout",
		}},
	}
	for _, f := range o.Frontends {
		if f.Issuer != "" {
			continue // a client of another provider
		}
		pcfg.Clients = append(pcfg.Clients, oidctest.Client{
			ID:                     f.Client(),
			Secret:                 f.secret(),
			RedirectURIs:           []string{f.URL(s) + "/bff/callback"},
			PostLogoutRedirectURIs: []string{f.URL(s) + "/"},
			BackchannelLogoutURI:   f.URL(s) + "/bff/backchannel-logout",
		})
	}
	if len(o.APIs) > 0 {
		pcfg.Audiences = map[string][]string{}
		for _, aud := range o.APIs {
			if aud != "" {
				pcfg.Audiences[aud] = nil
			}
		}
		for i := range pcfg.Clients {
			pcfg.Clients[i].TokenExchange = true
		}
	}
	if o.Provider != nil {
		o.Provider(&pcfg)
	}
	var err error
	if s.Provider, err = oidctest.NewProvider(pcfg); err != nil {
		return fmt.Errorf("build provider: %w", err)
	}
	if s.IssuerURL, err = s.Provider.Start("127.0.0.1:0"); err != nil {
		return fmt.Errorf("start provider: %w", err)
	}
	if o.ProviderMTLS {
		if _, err := s.Provider.StartMTLS("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start provider mTLS: %w", err)
		}
		ca := filepath.Join(o.Dir, "provider-mtls.pem")
		if err := os.WriteFile(ca, s.Provider.MTLSCertPEM(), 0o600); err != nil {
			return fmt.Errorf("write provider mTLS certificate: %w", err)
		}
		s.bffEnv = append(s.bffEnv, "SSL_CERT_FILE="+ca)
	}
	return nil
}

// BFFConfigDoc is the envoy-bff config the stack gives every replica:
// shared keys, the local provider, Redis when redisURL is set.
func BFFConfigDoc(issuer, appURL, redisURL, encKey, hashKey string) map[string]any {
	sess := map[string]any{
		"backend":         "memory",
		"encryption_keys": []map[string]any{{"id": "k1", "secret": encKey}},
		"hash_key":        hashKey,
	}
	if redisURL != "" {
		sess["backend"] = "redis"
		sess["redis"] = map[string]any{"url": redisURL}
	}
	return map[string]any{
		"log":     map[string]any{"level": "debug", "format": "json"},
		"session": sess,
		"oidc": map[string]any{
			"issuer":                   issuer,
			"client_id":                ClientID,
			"client_secret":            ClientSecret,
			"redirect_url":             appURL + "/bff/callback",
			"post_logout_redirect_url": appURL + "/",
		},
	}
}

// serve runs h on a free loopback port in this process.
func (s *Stack) serve(h http.Handler) (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// watch reports on Exited when a child process ends by itself.
func (s *Stack) watch() {
	for _, p := range s.processes() {
		go func() {
			<-p.done
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if !closed {
				select {
				case s.exited <- p.Name:
				default:
				}
			}
		}()
	}
}

// Exited names a child process that ended while the stack was running.
func (s *Stack) Exited() <-chan string { return s.exited }

func (s *Stack) processes() []*Process {
	var ps []*Process
	if s.Envoy != nil {
		ps = append(ps, s.Envoy.Process)
	}
	for _, b := range s.BFFs {
		ps = append(ps, b.Process)
	}
	if s.Redis != nil {
		ps = append(ps, s.Redis)
	}
	return ps
}

// Logs returns the tail of every child's log, for failure messages.
func (s *Stack) Logs(n int) string {
	var b strings.Builder
	for _, p := range s.processes() {
		fmt.Fprintf(&b, "----- %s (%s)\n%s\n", p.Name, p.LogPath, p.Tail(n))
	}
	return b.String()
}

// Close stops every process and server the stack started: Envoy first, then
// the replicas (gracefully), then Redis and the in-process servers.
func (s *Stack) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	if s.Envoy != nil {
		s.Envoy.Stop(5 * time.Second)
	}
	var wg sync.WaitGroup
	for _, b := range s.BFFs {
		wg.Go(func() { b.Stop(10 * time.Second) })
	}
	wg.Wait()
	if s.Redis != nil {
		s.Redis.Stop(5 * time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		_ = srv.Shutdown(ctx)
	}
	if s.Provider != nil {
		_ = s.Provider.Close()
	}
}

// ReadSession opens the session a cookie value names, from the stack's
// Redis, as a replica would: tests look at what is stored without going
// through the product's endpoints.
func (s *Stack) ReadSession(ctx context.Context, cookieValue string) (*sessionpb.Session, error) {
	var rec *sessionpb.Session
	err := s.withStore(cookieValue, func(b session.Backend, id session.ID) (err error) {
		rec, err = b.Get(ctx, id)
		return err
	})
	return rec, err
}

// ReadDerivedToken opens the token of profile that envoy-bff cached beside
// the session a cookie value names (an exchanged token), from the stack's
// Redis, as a replica would.
func (s *Stack) ReadDerivedToken(ctx context.Context, cookieValue, profile string) (*sessionpb.ClientToken, error) {
	var tok *sessionpb.ClientToken
	err := s.withStore(cookieValue, func(b session.Backend, id session.ID) (err error) {
		tok, err = b.GetDerivedToken(ctx, id, profile)
		return err
	})
	return tok, err
}

// withStore opens the stack's Redis store as a replica would (the default
// frontend's keys) and runs f for the session a cookie value names.
func (s *Stack) withStore(cookieValue string, f func(session.Backend, session.ID) error) error {
	if s.RedisURL == "" {
		return errors.New("read session: the stack has no Redis")
	}
	cfg := session.DefaultConfig()
	cfg.Backend = session.BackendRedis
	cfg.Redis.URL = s.RedisURL
	cfg.EncryptionKeys = session.KeyList{{ID: "k1", Secret: s.EncryptionKey}}
	cfg.HashKey = s.HashKey
	b, err := session.OpenBackend(cfg, time.Now)
	if err != nil {
		return err
	}
	defer b.Close()
	id, err := session.ParseID(cookieValue)
	if err != nil {
		return err
	}
	return f(b, id)
}
