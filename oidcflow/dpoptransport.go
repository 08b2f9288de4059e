package oidcflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// maxNonceErrorBody bounds the 400 body read to see whether it asks for a nonce.
const maxNonceErrorBody = 64 << 10

// errDPoPRetryBody fails a nonce retry whose request body cannot be replayed.
var errDPoPRetryBody = errors.New("dpop nonce retry: request body cannot be re-read")

// dpopTransport is the outermost layer of the provider's HTTP client
// (base → clientAuthTransport → dpopTransport). A POST to the token or
// PAR endpoint whose context carries a session's key (WithDPoPKey) gets a
// `DPoP` proof header by that key. A 400 use_dpop_nonce answer with a
// DPoP-Nonce is retried once with the nonce; a second one is returned as
// it is, so a provider cannot keep envoy-bff in a loop. The latest nonce
// the provider sent in any answer is remembered for the next proof.
type dpopTransport struct {
	next http.RoundTripper
	// targets reports whether u (without its query) is the token or PAR
	// endpoint (exact URLs from discovery); false until discovery.
	targets func(u string) bool
	rand    io.Reader
	now     func() time.Time
	nonce   atomic.Pointer[string] // the provider's latest DPoP-Nonce
}

// RoundTrip implements http.RoundTripper. It never changes req: proofs
// go on clones.
func (t *dpopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := dpopKeyFrom(req.Context())
	if key == nil || req.Method != http.MethodPost || !t.targets(urlWithoutQuery(req.URL)) {
		resp, err := t.next.RoundTrip(req)
		t.remember(resp)
		return resp, err
	}
	resp, err := t.send(req, key, t.currentNonce())
	if err != nil {
		return nil, err
	}
	t.remember(resp)
	nonce := resp.Header.Get("DPoP-Nonce")
	if resp.StatusCode != http.StatusBadRequest || nonce == "" {
		return resp, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxNonceErrorBody))
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read %s answer: %w", req.URL.Redacted(), err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var oauthErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &oauthErr) != nil || oauthErr.Error != "use_dpop_nonce" {
		return resp, nil
	}
	// RFC 9449 §8: the provider refused the proof for its missing or stale
	// nonce before looking at the grant, so the one retry spends nothing.
	if req.GetBody == nil && req.Body != nil && req.Body != http.NoBody {
		return nil, errDPoPRetryBody
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, fmt.Errorf("%w: %w", errDPoPRetryBody, err)
		}
	}
	resp, err = t.send(retry, key, nonce)
	if err != nil {
		return nil, err
	}
	t.remember(resp)
	return resp, nil
}

// send posts req with a fresh proof by key (with nonce when not empty).
func (t *dpopTransport) send(req *http.Request, key *DPoPKey, nonce string) (*http.Response, error) {
	htu := urlWithoutQuery(req.URL)
	proof, err := key.Sign(t.rand, DPoPProof{Method: req.Method, URL: htu, IssuedAt: t.now(), Nonce: nonce})
	if err != nil {
		return nil, fmt.Errorf("dpop proof for %s: %w", req.URL.Redacted(), err)
	}
	out := req.Clone(req.Context())
	out.Body = req.Body // Clone shares the body; keep the one this attempt reads
	out.Header.Set("DPoP", proof)
	return t.next.RoundTrip(out)
}

// urlWithoutQuery is u without query and fragment: a proof's htu.
func urlWithoutQuery(u *url.URL) string {
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	return c.String()
}

// remember keeps the DPoP-Nonce of any answer from the provider.
func (t *dpopTransport) remember(resp *http.Response) {
	if resp == nil {
		return
	}
	if n := resp.Header.Get("DPoP-Nonce"); n != "" && validNonce(n) {
		t.nonce.Store(&n)
	}
}

// currentNonce is the latest nonce, "" before the provider sent one.
func (t *dpopTransport) currentNonce() string {
	if n := t.nonce.Load(); n != nil {
		return *n
	}
	return ""
}

// validNonce accepts RFC 9449's nonce syntax (NQCHAR: printable ASCII
// without '"' and '\'), up to 1 KiB.
func validNonce(n string) bool {
	if len(n) > 1024 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
