package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Keycloak admin credentials the harness bootstraps (master realm).
const (
	KeycloakAdmin         = "admin"
	KeycloakAdminPassword = "admin-e2e-password"
)

// Keycloak is a running Keycloak (start-dev, in-memory database) with one
// realm imported from a file.
type Keycloak struct {
	*Process
	// URL is the server's root, http://127.0.0.1:<port>.
	URL string
	// Realm is the imported realm's name.
	Realm string
}

// Issuer is the realm's issuer URL.
func (k *Keycloak) Issuer() string { return k.URL + "/realms/" + k.Realm }

// StartKeycloak imports realmJSON (a realm export whose "realm" names it)
// and starts Keycloak on a free loopback port, waiting until the realm's
// discovery document answers. KEYCLOAK_HOME names the distribution and
// KEYCLOAK_JAVA_HOME a JDK it supports (the Makefile sets both from the
// bootstrap).
func StartKeycloak(ctx context.Context, dir string, realmJSON []byte) (*Keycloak, error) {
	home := os.Getenv("KEYCLOAK_HOME")
	if home == "" {
		return nil, fmt.Errorf("KEYCLOAK_HOME is not set: run `make bootstrap` (it downloads Keycloak)")
	}
	kc := filepath.Join(home, "bin", "kc.sh")
	if _, err := os.Stat(kc); err != nil {
		return nil, fmt.Errorf("keycloak: %w (run `make bootstrap`)", err)
	}
	var realm struct {
		Realm string `json:"realm"`
	}
	if err := json.Unmarshal(realmJSON, &realm); err != nil || realm.Realm == "" {
		return nil, fmt.Errorf("keycloak: realm file has no realm name: %v", err)
	}
	// --import-realm reads $KEYCLOAK_HOME/data/import; the database lives in
	// memory, so every start imports afresh and leaves nothing behind.
	importDir := filepath.Join(home, "data", "import")
	if err := os.MkdirAll(importDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(importDir, realm.Realm+"-realm.json"), realmJSON, 0o644); err != nil {
		return nil, err
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
		k, err := startKeycloakOnce(ctx, dir, kc, realm.Realm, env)
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

func startKeycloakOnce(ctx context.Context, dir, kc, realm string, env []string) (*Keycloak, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p, err := StartProcess("keycloak", dir, kc, []string{
		"start-dev", "--http-host", "127.0.0.1", "--http-port", strconv.Itoa(port),
		"--import-realm", "--db", "dev-mem", "--health-enabled", "false",
	}, env)
	if err != nil {
		return nil, err
	}
	k := &Keycloak{Process: p, URL: "http://127.0.0.1:" + strconv.Itoa(port), Realm: realm}
	wctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	if err := WaitHTTP(wctx, p, k.Issuer()+"/.well-known/openid-configuration", 200); err != nil {
		p.Stop(10 * time.Second)
		return nil, fmt.Errorf("keycloak did not serve realm %s: %w\n%s", realm, err, p.Tail(4000))
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
	resp, err := http.DefaultClient.Do(req)
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
