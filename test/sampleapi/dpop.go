package sampleapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

// errDPoP is every reason a DPoP request is refused: 401 invalid_dpop_proof.
var errDPoP = errors.New("invalid_dpop_proof")

// verifyDPoP checks r's single DPoP proof for the access token raw (RFC
// 9449 §7.1): signature by its own jwk, htm and htu equal to the request as
// the API received it, iat within a minute, ath, and a jti never seen
// before. The request's URL is the one the browser used: the scheme Envoy
// forwards (X-Forwarded-Proto), the Host, and the path before any Envoy
// rewrite (X-Envoy-Original-Path), without the query. The caller checks
// that the token's cnf.jkt is the proof's key.
func (a *API) verifyDPoP(r *http.Request, raw string) (oidctest.DPoPProof, error) {
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return oidctest.DPoPProof{}, fmt.Errorf("%w: want exactly one DPoP header, got %d", errDPoP, len(proofs))
	}
	now := a.cfg.Now()
	proof, err := oidctest.VerifyDPoPProof(proofs[0], oidctest.DPoPCheck{
		Method: r.Method, URL: requestURL(r), AccessToken: raw, Now: now,
	})
	if err != nil {
		return oidctest.DPoPProof{}, fmt.Errorf("%w: %w", errDPoP, err)
	}
	a.jtiMu.Lock()
	fresh := a.jtis.Fresh(proof.JTI, now)
	a.jtiMu.Unlock()
	if !fresh {
		return oidctest.DPoPProof{}, fmt.Errorf("%w: proof replayed (jti seen before)", errDPoP)
	}
	return proof, nil
}

// requestURL is the URL r was sent to, as the browser saw it, without query.
func requestURL(r *http.Request) string {
	scheme := "http"
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	} else if r.TLS != nil {
		scheme = "https"
	}
	path := r.URL.Path
	if orig := r.Header.Get("X-Envoy-Original-Path"); orig != "" {
		path, _, _ = strings.Cut(orig, "?")
	}
	return scheme + "://" + r.Host + path
}

// rejectDPoP answers 401 invalid_dpop_proof with a DPoP challenge.
func (a *API) rejectDPoP(w http.ResponseWriter, out Whoami) {
	a.dpopRejected.Add(1)
	w.Header().Set("WWW-Authenticate", `DPoP realm="sample-api", error="invalid_dpop_proof", algs="`+strings.Join(oidctest.DPoPAlgs, " ")+`"`)
	writeJSON(w, http.StatusUnauthorized, rejection{Error: "invalid_dpop_proof", Description: out.TokenError, Whoami: out})
}
