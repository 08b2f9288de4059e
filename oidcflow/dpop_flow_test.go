package oidcflow

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

// TestDPoPLoginAndRefresh: with oidc.dpop the login makes a key, names it
// in the authorization request (dpop_jkt), binds the code exchange and
// every refresh to it with proofs (meeting the provider's nonce when it
// asks for one, with one retry), and the session keeps the key and a
// DPoP-bound token whose cnf.jkt is the key's thumbprint.
func TestDPoPLoginAndRefresh(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		alg     string   // configured
		listed  []string // by the provider (nil: ES256 and EdDSA)
		nonce   bool
		wantAlg string
	}{
		{"ES256_configured", DPoPAlgES256, nil, false, DPoPAlgES256},
		{"EdDSA_configured", DPoPAlgEdDSA, nil, false, DPoPAlgEdDSA},
		{"chosen_EdDSA_provider_requires_nonce", "", nil, true, DPoPAlgEdDSA},
		{"chosen_ES256_when_EdDSA_not_listed", "", []string{"ES256", "PS256"}, false, DPoPAlgES256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t,
				withConfig(func(c *Config) { c.DPoP, c.DPoPAlg = true, tc.alg }),
				withProvider(func(c *oidctest.ProviderConfig) { c.RequireDPoPNonce, c.DPoPAlgs = tc.nonce, tc.listed }))
			var mu sync.Mutex
			var proofs []string
			inner := e.provider.Handler()
			e.hook(oidctest.PathToken, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				proofs = append(proofs, r.Header.Get("DPoP"))
				mu.Unlock()
				inner.ServeHTTP(w, r)
			})

			id, rec := e.loggedIn()
			key, err := ParseDPoPKey(rec.GetDpopKey())
			if err != nil {
				t.Fatalf("session holds no usable DPoP key: %v", err)
			}
			wantAlg := tc.wantAlg
			if key.Alg() != wantAlg || rec.GetTokenType() != TokenTypeDPoP {
				t.Fatalf("key alg %s token type %q, want %s DPoP", key.Alg(), rec.GetTokenType(), wantAlg)
			}
			if got := e.provider.LastAuthorizeRequest().Get("dpop_jkt"); got != key.Thumbprint() {
				t.Errorf("authorization request dpop_jkt %q, want the session key's %q", got, key.Thumbprint())
			}
			if jkt := cnfJKT(t, rec.GetAccessToken()); jkt != key.Thumbprint() {
				t.Errorf("access token cnf.jkt %q, want %q", jkt, key.Thumbprint())
			}

			e.clock.Advance(due)
			next, err := e.h.Refresher().Refresh(t.Context(), id, rec)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if next.GetAccessToken() == rec.GetAccessToken() || next.GetTokenType() != TokenTypeDPoP || cnfJKT(t, next.GetAccessToken()) != key.Thumbprint() {
				t.Errorf("refreshed token not renewed or not bound to the session key (type %q)", next.GetTokenType())
			}
			if string(next.GetDpopKey()) != string(rec.GetDpopKey()) {
				t.Error("refresh changed the session's key")
			}

			st := e.provider.Stats()
			mu.Lock()
			defer mu.Unlock()
			wantCalls, wantChallenges := 2, 0
			if tc.nonce {
				// One challenge at the code exchange; the refresh reuses the nonce.
				wantCalls, wantChallenges = 3, 1
			}
			if len(proofs) != wantCalls || st.DPoPNonceChallenges != wantChallenges {
				t.Errorf("token calls %d, nonce challenges %d; want %d, %d", len(proofs), st.DPoPNonceChallenges, wantCalls, wantChallenges)
			}
			for i, p := range proofs {
				if p == "" {
					t.Errorf("token request %d carried no DPoP proof", i)
				}
			}
			if st.DPoPBoundTokens != 2 {
				t.Errorf("provider bound %d tokens, want 2", st.DPoPBoundTokens)
			}
			assertKeyNotIn(t, key, e.logs.String())
		})
	}
}

// TestDPoPProviderBearerRefused: a provider that answers the proof with a
// bearer token fails the login; the frontend asked for sender-constrained
// tokens and never quietly takes a bearer one.
func TestDPoPProviderBearerRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.DPoP = true }))
	// A provider that knows nothing of DPoP: it ignores dpop_jkt and the proof.
	inner := e.provider.Handler()
	e.hook(oidctest.PathAuthorize, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		q.Del("dpop_jkt")
		r.URL.RawQuery = q.Encode()
		inner.ServeHTTP(w, r)
	})
	e.hook(oidctest.PathToken, func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("DPoP")
		inner.ServeHTTP(w, r)
	})
	b := e.browser()
	r := b.get(b.authorize(b.startLogin("/")))
	wantError(t, r, http.StatusBadRequest, "login_failed")
	if !strings.Contains(e.logs.String(), "not DPoP-bound") {
		t.Errorf("log does not say why: %s", e.logs.String())
	}
}

// cnfJKT reads the cnf.jkt of a JWT access token (unverified: the provider's own).
func cnfJKT(t *testing.T, at string) string {
	t.Helper()
	parts := strings.Split(at, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.Cnf.JKT
}

// assertKeyNotIn fails if s holds key's private key in any usual encoding.
func assertKeyNotIn(t *testing.T, key *DPoPKey, s string) {
	t.Helper()
	for _, enc := range []string{
		hex.EncodeToString(key.der), base64.StdEncoding.EncodeToString(key.der), base64.RawURLEncoding.EncodeToString(key.der),
	} {
		if strings.Contains(s, enc) {
			t.Fatal("T78: the DPoP private key appears in the output")
		}
	}
}

// TestDPoPTransportNonce: the transport adds proofs only to POSTs to the
// token (or PAR) endpoint made with a key in the context; a use_dpop_nonce
// answer is retried once with the nonce, a second one returned as it is
// (bounded); a nonce from any answer is used next time. The provider here
// is a handler, because no real one answers use_dpop_nonce to a proof that
// carries its nonce (the loop this bounds).
func TestDPoPTransportNonce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		challenges int // answers use_dpop_nonce this many times, then 200
		wantCalls  int
		wantStatus int
	}{
		{"no_nonce_needed", 0, 1, 200},
		{"one_challenge_one_retry", 1, 2, 200},
		{"endless_challenges_retried_once", 100, 2, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var seen []map[string]any
			var bodies []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				defer mu.Unlock()
				bodies = append(bodies, string(body))
				claims := map[string]any{}
				if p := r.Header.Get("DPoP"); p != "" {
					raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(p, ".")[1])
					_ = json.Unmarshal(raw, &claims)
				}
				seen = append(seen, claims)
				w.Header().Set("DPoP-Nonce", "nonce-"+string(rune('a'+len(seen))))
				if len(seen) <= tc.challenges {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					_, _ = io.WriteString(w, `{"error":"use_dpop_nonce"}`)
					return
				}
				_, _ = io.WriteString(w, `{}`)
			}))
			t.Cleanup(srv.Close)
			tr := &dpopTransport{
				next:    http.DefaultTransport,
				targets: func(u string) bool { return u == srv.URL+"/token" },
				rand:    rand.Reader,
				now:     time.Now,
			}
			key, err := GenerateDPoPKey(DPoPAlgES256, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			client := &http.Client{Transport: tr}
			post := func(path string, withKey bool) *http.Response {
				ctx := t.Context()
				if withKey {
					ctx = WithDPoPKey(ctx, key)
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path+"?q=1", strings.NewReader("grant_type=x"))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				return resp
			}
			resp := post("/token", true)
			mu.Lock()
			if len(seen) != tc.wantCalls || resp.StatusCode != tc.wantStatus {
				t.Fatalf("%d calls, status %d; want %d, %d", len(seen), resp.StatusCode, tc.wantCalls, tc.wantStatus)
			}
			if seen[0]["htu"] != srv.URL+"/token" || seen[0]["htm"] != "POST" || seen[0]["nonce"] != nil {
				t.Errorf("first proof %v: want htu without query, POST, no nonce yet", seen[0])
			}
			if tc.wantCalls == 2 && (seen[1]["nonce"] != "nonce-b" || bodies[1] != "grant_type=x") {
				t.Errorf("retry: nonce %v body %q; want the challenge's nonce and the same body", seen[1]["nonce"], bodies[1])
			}
			mu.Unlock()

			// The latest nonce is used at once next time; other requests get no proof.
			post("/token", true)
			post("/revoke", true)
			post("/token", false)
			mu.Lock()
			defer mu.Unlock()
			n := len(seen)
			if last := seen[n-3]; last["nonce"] == nil {
				t.Errorf("the next proof does not carry the remembered nonce: %v", last)
			}
			if len(seen[n-2]) != 0 || len(seen[n-1]) != 0 {
				t.Errorf("a proof went to another endpoint or without a key: %v %v", seen[n-2], seen[n-1])
			}
		})
	}
}

// TestDPoPRevocation: a DPoP session's revocation carries a proof; when the
// provider refuses the refresh token (Keycloak 26's DPoP profile does not
// bind a confidential client's refresh token, and refuses to revoke it),
// the bound access token is revoked instead. A session without DPoP never
// falls back.
func TestDPoPRevocation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		dpop      bool
		wantHints string
		wantErr   bool
	}{
		{"dpop_falls_back_to_the_access_token", true, "refresh_token access_token", false},
		{"bearer_session_reports_the_refusal", false, "refresh_token", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withConfig(func(c *Config) { c.DPoP = tc.dpop }))
			var mu sync.Mutex
			var hints []string
			proofs := 0
			inner := e.provider.Handler()
			e.hook(oidctest.PathRevoke, func(w http.ResponseWriter, r *http.Request) {
				if err := r.ParseForm(); err != nil {
					t.Error(err)
				}
				mu.Lock()
				hints = append(hints, r.PostForm.Get("token_type_hint"))
				if r.Header.Get("DPoP") != "" {
					proofs++
				}
				mu.Unlock()
				if r.PostForm.Get("token_type_hint") == "refresh_token" {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					_, _ = io.WriteString(w, `{"error":"invalid_token","error_description":"DPoP proof and token binding verification failed"}`)
					return
				}
				inner.ServeHTTP(w, r)
			})
			_, rec := e.loggedIn()
			err := (&providerRevoker{cfg: e.cfg, provider: e.h.Provider()}).Revoke(t.Context(), rec)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Revoke: %v, want error %v", err, tc.wantErr)
			}
			mu.Lock()
			defer mu.Unlock()
			if got := strings.Join(hints, " "); got != tc.wantHints {
				t.Errorf("revocations %q, want %q", got, tc.wantHints)
			}
			if want := map[bool]int{true: 2, false: 0}[tc.dpop]; proofs != want {
				t.Errorf("%d revocations carried a DPoP proof, want %d", proofs, want)
			}
		})
	}
}
