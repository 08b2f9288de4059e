package integration

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestDPoP_T78 through real Envoy with the local provider requiring DPoP
// nonces: a frontend with oidc.dpop logs in (the code exchange bound to the
// session's key after one nonce challenge), every API call reaches the
// sample API with `Authorization: DPoP` and a fresh proof for that request
// that it verifies against the token's cnf.jkt; a proof replayed at the API
// is refused; the session outlives its access token by a refresh bound to
// the same key; the private key is in no log and nothing the browser got.
func TestDPoP_T78(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	type upstream struct{ auth, proof, host, proto string }
	var seen []upstream
	s := startStack(t, harness.Options{
		Redis:          true,
		AccessTokenTTL: 6 * time.Second,
		Provider:       func(c *oidctest.ProviderConfig) { c.RequireDPoPNonce = true },
		BFFConfig:      func(doc map[string]any) { doc["oidc"].(map[string]any)["dpop"] = true },
		APITap: func(r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, upstream{r.Header.Get("Authorization"), r.Header.Get("DPoP"), r.Host, r.Header.Get("X-Forwarded-Proto")})
		},
	})
	b := newBrowser(t, s.URL)
	if r, _ := b.login("/"); r.Status != 200 {
		t.Fatalf("login ended with %d", r.Status)
	}
	loggedIn := time.Now()
	if st := s.Provider.Stats(); st.DPoPNonceChallenges != 1 || st.DPoPBoundTokens != 1 {
		t.Fatalf("provider: %d nonce challenges, %d bound tokens; want 1 and 1", st.DPoPNonceChallenges, st.DPoPBoundTokens)
	}

	const calls = 10
	var jkt string
	for i := range calls {
		w := whoamiOf(t, b.api("/api/whoami"))
		if w.Scheme != "DPoP" || w.DPoPJKT == "" || w.Sub != "demo-user" {
			t.Fatalf("call %d: API saw %+v; want a verified DPoP token", i, w)
		}
		if jkt != "" && w.DPoPJKT != jkt {
			t.Fatalf("call %d: proof by key %s, earlier ones by %s", i, w.DPoPJKT, jkt)
		}
		jkt = w.DPoPJKT
	}
	mu.Lock()
	last := seen[len(seen)-1]
	jtis := map[string]bool{}
	for _, u := range seen {
		c := proofClaims(t, u.proof)
		if !strings.HasPrefix(u.auth, "DPoP ") || jtis[c["jti"].(string)] || c["htm"] != "GET" || c["htu"] != s.URL+"/api/whoami" {
			t.Fatalf("upstream got %q with proof %v; want DPoP, a new jti, GET %s/api/whoami", u.auth[:min(len(u.auth), 10)], c, s.URL)
		}
		jtis[c["jti"].(string)] = true
	}
	mu.Unlock()
	if time.Since(loggedIn) > 2*time.Second {
		t.Fatal("the calls took past the refresh lead; the replay below could meet an expired token")
	}

	// T78: the last proof again, straight at the API, as one who captured
	// it there would: refused, however valid the token.
	replay := func(proof string) int {
		req, _ := http.NewRequest(http.MethodGet, s.APIURL+"/api/whoami", nil)
		req.Host = last.host
		req.Header.Set("X-Forwarded-Proto", last.proto)
		req.Header.Set("Authorization", last.auth)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode == 401 && body.Error != "invalid_dpop_proof" {
			t.Errorf("refused with %q, want invalid_dpop_proof", body.Error)
		}
		return resp.StatusCode
	}
	if code := replay(last.proof); code != 401 {
		t.Fatalf("T78: a replayed proof answered %d, want 401", code)
	}
	if code := replay(""); code != 401 {
		t.Fatalf("T78: the token without a proof answered %d, want 401", code)
	}

	// Past the refresh lead (half of 6s): the refresh is bound to the same key.
	time.Sleep(time.Until(loggedIn.Add(3500 * time.Millisecond)))
	w := whoamiOf(t, b.api("/api/whoami"))
	if w.Scheme != "DPoP" || w.DPoPJKT != jkt {
		t.Fatalf("after the refresh the API saw %+v; want DPoP by the same key %s", w, jkt)
	}
	if st := s.Provider.Stats(); st.RefreshTokenGrants != 1 || st.DPoPBoundTokens != 2 {
		t.Fatalf("provider: %d refresh grants, %d bound tokens; want 1 and 2", st.RefreshTokenGrants, st.DPoPBoundTokens)
	}

	// The key never leaves the server: not in what the browser got, nor in
	// any log. Read it from the store as a replica would.
	key := sessionKey(t, s, b.cookies["__Host-bff"])
	if key.Thumbprint() != jkt {
		t.Fatalf("the stored key %s is not the one the proofs used (%s)", key.Thumbprint(), jkt)
	}
	der := key.Marshal()
	out := b.everything() + s.Logs(100000)
	for _, enc := range []string{base64.StdEncoding.EncodeToString(der), base64.RawURLEncoding.EncodeToString(der), hex.EncodeToString(der)} {
		if strings.Contains(out, enc) {
			t.Fatal("T78: the session's DPoP private key appears in a log or a browser response")
		}
	}
	if strings.Contains(b.everything(), "dpop+jwt") || strings.Contains(b.everything(), last.proof[:40]) {
		t.Error("a DPoP proof reached the browser")
	}
}

// proofClaims decodes a proof's payload (the API verified it already).
func proofClaims(t *testing.T, proof string) map[string]any {
	t.Helper()
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("upstream DPoP header is not a JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// sessionKey reads the DPoP key of the session a cookie value names from
// the stack's Redis.
func sessionKey(t *testing.T, s *harness.Stack, cookie string) *oidcflow.DPoPKey {
	t.Helper()
	ring, err := session.NewKeyRing(session.KeyList{{ID: "k1", Secret: s.EncryptionKey}}, s.HashKey)
	if err != nil {
		t.Fatal(err)
	}
	id, err := session.ParseID(cookie)
	if err != nil {
		t.Fatal(err)
	}
	store := session.NewRedisStore(redisClient(t, s.RedisURL), session.DefaultConfig(), ring, time.Now)
	rec, err := store.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("read the session: %v", err)
	}
	key, err := oidcflow.ParseDPoPKey(rec.GetDpopKey())
	if err != nil {
		t.Fatalf("the session holds no DPoP key: %v", err)
	}
	return key
}
