package sampleapi

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

// dpopToken runs the code flow with DPoP proofs by key and returns the
// DPoP-bound access token.
func (e *env) dpopToken(t *testing.T, key *oidcflow.DPoPKey) string {
	t.Helper()
	form := e.codeGrant(t, "openid")
	req, _ := http.NewRequest(http.MethodPost, e.issuer+oidctest.PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	req.Header.Set("DPoP", sign(t, key, "POST", e.issuer+oidctest.PathToken, "", time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.TokenType != "DPoP" {
		t.Fatalf("token endpoint: %d %v type %q", resp.StatusCode, err, body.TokenType)
	}
	return body.AccessToken
}

func sign(t *testing.T, key *oidcflow.DPoPKey, method, u, token string, iat time.Time) string {
	t.Helper()
	p, err := key.Sign(rand.Reader, oidcflow.DPoPProof{Method: method, URL: u, IssuedAt: iat, AccessToken: token})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWhoamiDPoP (T78): the API serves a DPoP-bound token only with a
// proof for this request by the token's key, each proof once; a bound
// token sent as a bearer token is refused.
func TestWhoamiDPoP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	key, err := oidcflow.GenerateDPoPKey(oidcflow.DPoPAlgES256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := oidcflow.GenerateDPoPKey(oidcflow.DPoPAlgEdDSA, rand.Reader)
	tok := e.dpopToken(t, key)
	const here = "http://example.com/api/whoami" // httptest.NewRequest's URL
	now := e.apiClock.Now()
	replayed := sign(t, key, "GET", here, tok, now)
	if rec := e.call("/api/whoami", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {replayed}}); rec.Code != http.StatusOK {
		t.Fatalf("first use of a proof: %d %s", rec.Code, rec.Body)
	}

	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"valid", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {sign(t, key, "GET", here, tok, now)}}, 200},
		{"behind_envoy_rewrite", http.Header{"Authorization": {"DPoP " + tok}, "X-Forwarded-Proto": {"https"}, "X-Envoy-Original-Path": {"/v1/whoami?x=1"},
			"Dpop": {sign(t, key, "GET", "https://example.com/v1/whoami", tok, now)}}, 200},
		{"replayed_proof", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {replayed}}, 401},
		{"no_proof", http.Header{"Authorization": {"DPoP " + tok}}, 401},
		{"two_proofs", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {sign(t, key, "GET", here, tok, now), sign(t, key, "GET", here, tok, now)}}, 401},
		{"other_method", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {sign(t, key, "POST", here, tok, now)}}, 401},
		{"other_url", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {sign(t, key, "GET", "http://example.com/api/other", tok, now)}}, 401},
		{"other_token_ath", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {sign(t, key, "GET", here, tok+"x", now)}}, 401},
		{"stale_iat", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {sign(t, key, "GET", here, tok, now.Add(-2*time.Minute))}}, 401},
		{"other_key_than_cnf", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {sign(t, other, "GET", here, tok, now)}}, 401},
		{"bound_token_as_bearer", bearer(tok), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.call("/api/whoami", tc.header)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			var w struct {
				Whoami
				Error string `json:"error"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &w)
			switch {
			case tc.want == 200 && (w.Scheme != "DPoP" || w.DPoPJKT != key.Thumbprint() || w.Sub == ""):
				t.Errorf("whoami %+v: want the DPoP scheme and the key's thumbprint", w.Whoami)
			case tc.want == 401 && (w.Error != "invalid_dpop_proof" || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "DPoP ")):
				t.Errorf("error %q challenge %q, want invalid_dpop_proof with a DPoP challenge", w.Error, rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
	if st := e.api.Stats(); st.DPoPVerified != 3 || st.DPoPRejected != 9 {
		t.Errorf("stats %+v: want 3 verified, 9 rejected", st)
	}
}
