package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Keycloak admin credentials the harness bootstraps (master realm).
const (
	KeycloakAdmin         = "admin"
	KeycloakAdminPassword = "admin-e2e-password"
)

// Keycloak is a running Keycloak (start-dev, in-memory database) with
// realms imported from files.
type Keycloak struct {
	*Process
	// URL is the server's root, http://127.0.0.1:<port> (https with
	// KeycloakOptions.TLS).
	URL string
	// HTTPClient reaches Keycloak: it trusts the test CA when Keycloak
	// serves HTTPS, and presents no client certificate.
	HTTPClient *http.Client
	// Cert is its server certificate with KeycloakOptions.TLS (a browser
	// trusts it by its SPKIHash).
	Cert Cert
	// Realm is the realm Issuer and the admin calls use: the first imported
	// one, or another one in a view from InRealm.
	Realm string
	// Realms are the imported realms' names, in the order given.
	Realms []string
}

// InRealm is a view of k whose Issuer and admin calls use another of its
// realms; it shares k's process (stopping either stops both).
func (k *Keycloak) InRealm(realm string) *Keycloak {
	v := *k
	v.Realm = realm
	return &v
}

// Issuer is the realm's issuer URL.
func (k *Keycloak) Issuer() string { return k.URL + "/realms/" + k.Realm }

// KeycloakOptions shapes a Keycloak.
type KeycloakOptions struct {
	// TLS, when set, makes Keycloak serve HTTPS only, with a server
	// certificate from this PKI, and request (not require) client
	// certificates chaining to its CA: RFC 8705 tls_client_auth and
	// certificate-bound tokens (FAPI 2.0) read them from the connection.
	TLS *PKI
}

// StartKeycloak imports each of realmJSONs (realm exports whose "realm"
// names them; at least one) and starts Keycloak on a free loopback port,
// waiting until every realm's discovery document answers. KEYCLOAK_HOME
// names the distribution and KEYCLOAK_JAVA_HOME a JDK it supports (the
// Makefile sets both from the bootstrap).
func StartKeycloak(ctx context.Context, dir string, realmJSONs ...[]byte) (*Keycloak, error) {
	return StartKeycloakWith(ctx, dir, KeycloakOptions{}, realmJSONs...)
}

// StartKeycloakWith is StartKeycloak shaped by o.
func StartKeycloakWith(ctx context.Context, dir string, o KeycloakOptions, realmJSONs ...[]byte) (*Keycloak, error) {
	home := os.Getenv("KEYCLOAK_HOME")
	if home == "" {
		return nil, fmt.Errorf("KEYCLOAK_HOME is not set: run `make bootstrap` (it downloads Keycloak)")
	}
	kc := filepath.Join(home, "bin", "kc.sh")
	if _, err := os.Stat(kc); err != nil {
		return nil, fmt.Errorf("keycloak: %w (run `make bootstrap`)", err)
	}
	if len(realmJSONs) == 0 {
		return nil, errors.New("keycloak: no realm to import")
	}
	var realms []string
	for i, raw := range realmJSONs {
		var realm struct {
			Realm string `json:"realm"`
		}
		if err := json.Unmarshal(raw, &realm); err != nil || realm.Realm == "" {
			return nil, fmt.Errorf("keycloak: realm file %d has no realm name: %v", i+1, err)
		}
		if slices.Contains(realms, realm.Realm) {
			return nil, fmt.Errorf("keycloak: realm %s given twice", realm.Realm)
		}
		realms = append(realms, realm.Realm)
	}
	// --import-realm reads every file in $KEYCLOAK_HOME/data/import; the
	// database lives in memory, so every start imports afresh. The files go
	// once Keycloak has imported them (or failed to start), so a later start
	// imports only its own realms.
	importDir := filepath.Join(home, "data", "import")
	if err := os.MkdirAll(importDir, 0o755); err != nil {
		return nil, err
	}
	for i, raw := range realmJSONs {
		path := filepath.Join(importDir, realms[i]+"-realm.json")
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			return nil, err
		}
		defer os.Remove(path)
	}
	env := []string{
		"KC_BOOTSTRAP_ADMIN_USERNAME=" + KeycloakAdmin,
		"KC_BOOTSTRAP_ADMIN_PASSWORD=" + KeycloakAdminPassword,
		// Netty's thread-local reset needs this on Java 24 and later.
		"JAVA_OPTS_APPEND=--add-opens=java.base/java.lang=ALL-UNNAMED",
	}
	if jh := os.Getenv("KEYCLOAK_JAVA_HOME"); jh != "" {
		env = append(env, "JAVA_HOME="+jh)
	}
	// Keycloak binds its port only after the JVM is up, so another process
	// may take it meanwhile: then it exits, and another port is tried.
	var lastErr error
	for range 3 {
		k, err := startKeycloakOnce(ctx, dir, kc, realms, env, o)
		if err == nil {
			return k, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func startKeycloakOnce(ctx context.Context, dir, kc string, realms, env []string, o KeycloakOptions) (*Keycloak, error) {
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	port := ports[0]
	args := []string{"start-dev", "--http-host", "127.0.0.1", "--http-port", strconv.Itoa(port),
		"--import-realm", "--db", "dev-mem", "--health-enabled", "false"}
	scheme, client := "http", http.DefaultClient
	var server Cert
	if o.TLS != nil {
		server, err = o.TLS.Server("keycloak")
		if err != nil {
			return nil, err
		}
		// HTTPS alone, so the issuer has one spelling (start-dev keeps
		// its HTTP listener regardless: it gets a loopback port of its
		// own, which nothing uses). The CA goes into
		// Keycloak's system truststore, which also checks client
		// certificates when no dedicated mTLS truststore is set.
		args = []string{"start-dev", "--http-host", "127.0.0.1", "--http-port", strconv.Itoa(ports[1]),
			"--http-enabled", "false", "--https-port", strconv.Itoa(port),
			"--https-certificate-file", server.CertFile, "--https-certificate-key-file", server.KeyFile,
			"--https-client-auth", "request", "--truststore-paths", o.TLS.CAFile,
			"--import-realm", "--db", "dev-mem", "--health-enabled", "false"}
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: o.TLS.ClientTLS(nil)}}
	}
	p, err := StartProcess("keycloak", dir, kc, args, env)
	if err != nil {
		return nil, err
	}
	k := &Keycloak{Process: p, URL: scheme + "://127.0.0.1:" + strconv.Itoa(port), HTTPClient: client, Cert: server, Realm: realms[0], Realms: realms}
	wctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	for _, realm := range realms {
		if err := waitHTTPWith(wctx, p, client, k.InRealm(realm).Issuer()+"/.well-known/openid-configuration", 200); err != nil {
			p.Stop(10 * time.Second)
			return nil, fmt.Errorf("keycloak did not serve realm %s: %w\n%s", realm, err, p.Tail(4000))
		}
	}
	return k, nil
}

// AdminToken logs in to the master realm as the bootstrap admin.
func (k *Keycloak) AdminToken(ctx context.Context) (string, error) {
	form := url.Values{"grant_type": {"password"}, "client_id": {"admin-cli"},
		"username": {KeycloakAdmin}, "password": {KeycloakAdminPassword}}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := k.call(ctx, http.MethodPost, "/realms/master/protocol/openid-connect/token", "", form, &tok); err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// LogoutUser ends every session of username at Keycloak through its admin
// API, as an administrator would; Keycloak sends back-channel logouts.
func (k *Keycloak) LogoutUser(ctx context.Context, username string) error {
	admin, id, err := k.user(ctx, username)
	if err != nil {
		return err
	}
	return k.call(ctx, http.MethodPost, "/admin/realms/"+k.Realm+"/users/"+id+"/logout", admin, nil, nil)
}

// user logs in as the admin and finds username's ID.
func (k *Keycloak) user(ctx context.Context, username string) (admin, id string, err error) {
	if admin, err = k.AdminToken(ctx); err != nil {
		return "", "", err
	}
	var users []struct {
		ID string `json:"id"`
	}
	q := "/admin/realms/" + k.Realm + "/users?exact=true&username=" + url.QueryEscape(username)
	if err := k.call(ctx, http.MethodGet, q, admin, nil, &users); err != nil {
		return "", "", err
	}
	if len(users) != 1 {
		return "", "", fmt.Errorf("keycloak: %d users named %q", len(users), username)
	}
	return admin, users[0].ID, nil
}

// UserSessions counts username's sessions at Keycloak.
func (k *Keycloak) UserSessions(ctx context.Context, username string) (int, error) {
	admin, id, err := k.user(ctx, username)
	if err != nil {
		return 0, err
	}
	var sessions []json.RawMessage
	if err := k.call(ctx, http.MethodGet, "/admin/realms/"+k.Realm+"/users/"+id+"/sessions", admin, nil, &sessions); err != nil {
		return 0, err
	}
	return len(sessions), nil
}

// UserID is username's ID in the realm: the sub of its tokens.
func (k *Keycloak) UserID(ctx context.Context, username string) (string, error) {
	_, id, err := k.user(ctx, username)
	return id, err
}

// SessionClients lists username's sessions at Keycloak, each as the sorted
// client IDs it has logged in to: with single sign-on, one session holds
// every client the user signed in to without a second form.
func (k *Keycloak) SessionClients(ctx context.Context, username string) ([][]string, error) {
	admin, id, err := k.user(ctx, username)
	if err != nil {
		return nil, err
	}
	var sessions []struct {
		Clients map[string]string `json:"clients"` // client UUID → client ID
	}
	if err := k.call(ctx, http.MethodGet, "/admin/realms/"+k.Realm+"/users/"+id+"/sessions", admin, nil, &sessions); err != nil {
		return nil, err
	}
	out := make([][]string, 0, len(sessions))
	for _, s := range sessions {
		clients := slices.Sorted(maps.Values(s.Clients))
		out = append(out, clients)
	}
	return out, nil
}

// Event is one of Keycloak's user events (the realm must store them:
// eventsEnabled and enabledEventTypes in its file).
type Event struct {
	Type      string            `json:"type"`
	ClientID  string            `json:"clientId"`
	UserID    string            `json:"userId"`
	SessionID string            `json:"sessionId"`
	Error     string            `json:"error"`
	Details   map[string]string `json:"details"`
}

// Events lists the realm's stored user events of the given types (all
// types when none), newest first, at most 1,000.
func (k *Keycloak) Events(ctx context.Context, types ...string) ([]Event, error) {
	admin, err := k.AdminToken(ctx)
	if err != nil {
		return nil, err
	}
	q := url.Values{"max": {"1000"}}
	for _, t := range types {
		q.Add("type", t)
	}
	var events []Event
	if err := k.call(ctx, http.MethodGet, "/admin/realms/"+k.Realm+"/events?"+q.Encode(), admin, nil, &events); err != nil {
		return nil, err
	}
	return events, nil
}

// call sends one request to Keycloak and decodes a 2xx JSON answer into out.
func (k *Keycloak) call(ctx context.Context, method, path, bearer string, form url.Values, out any) error {
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(ctx, method, k.URL+path, body)
	if err != nil {
		return err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := k.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("keycloak %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("keycloak %s %s: status %d", method, path, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
