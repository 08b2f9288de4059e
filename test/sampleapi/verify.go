package sampleapi

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Limits on what the API reads from the network.
const (
	maxTokenBytes = 16 << 10
	maxDocBytes   = 1 << 20
)

// Token verification failures; whoami reports their text.
var (
	ErrMalformedToken  = errors.New("malformed token")
	ErrUnknownKey      = errors.New("token signed by an unknown key")
	ErrBadSignature    = errors.New("bad signature")
	ErrInvalidClaims   = errors.New("invalid claims")
	ErrKeysUnavailable = errors.New("provider keys unavailable")
	// ErrWrongAudience is a valid token whose `aud` lacks the API's audience.
	ErrWrongAudience = errors.New("token not made for this API's audience")
)

// claims are the access-token claims the API reads.
type claims struct {
	jwt.Claims
	ClientID        string `json:"client_id"`
	AuthorizedParty string `json:"azp"`
	Scope           string `json:"scope"`
	// Cnf binds a DPoP token to its key (RFC 9449 §6.1).
	Cnf struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
}

// verify checks raw's RS256 signature against the provider's keys and its
// issuer, expiry and (when configured) audience. A valid token for another
// audience returns its claims with ErrWrongAudience.
func (a *API) verify(ctx context.Context, raw string) (*claims, error) {
	if len(raw) > maxTokenBytes {
		return nil, ErrMalformedToken
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(tok.Headers) != 1 {
		return nil, ErrMalformedToken
	}
	if typ, ok := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string); ok && !strings.EqualFold(typ, "JWT") && !strings.EqualFold(typ, "at+jwt") {
		return nil, fmt.Errorf("%w: typ %q is not an access token", ErrInvalidClaims, typ)
	}
	key, err := a.keys.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return nil, err
	}
	var c claims
	if err := tok.Claims(key, &c); err != nil {
		return nil, ErrBadSignature
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: a.cfg.Issuer, Time: a.cfg.Now()}, 0); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidClaims, err)
	}
	if c.Expiry == nil || c.Subject == "" {
		return nil, fmt.Errorf("%w: exp and sub are required", ErrInvalidClaims)
	}
	if a.cfg.Audience != "" && !c.Audience.Contains(a.cfg.Audience) {
		return &c, fmt.Errorf("%w %q (aud %q)", ErrWrongAudience, a.cfg.Audience, []string(c.Audience))
	}
	return &c, nil
}

// keySet caches the provider's RSA signing keys, refetching on an unknown kid
// at most once per cooldown; concurrent refetches are merged.
type keySet struct {
	cfg Config

	fetchMu  sync.Mutex // serialises network fetches
	mu       sync.RWMutex
	jwksURI  string
	keys     map[string]*rsa.PublicKey
	loaded   bool
	lastMiss time.Time
}

// newKeySet builds an empty key set for cfg.
func newKeySet(cfg Config) *keySet { return &keySet{cfg: cfg} }

// lookup returns the cached key for kid.
func (s *keySet) lookup(kid string) (*rsa.PublicKey, bool, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[kid]
	return k, ok, s.loaded
}

// key returns the key for kid, fetching the JWKS on first use or on a miss.
func (s *keySet) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	if k, ok, _ := s.lookup(kid); ok {
		return k, nil
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	k, ok, loaded := s.lookup(kid)
	if ok {
		return k, nil
	}
	now := s.cfg.Now()
	if loaded {
		s.mu.RLock()
		cooling := !s.lastMiss.IsZero() && now.Sub(s.lastMiss) < s.cfg.RefetchCooldown
		s.mu.RUnlock()
		if cooling {
			return nil, ErrUnknownKey
		}
	}
	keys, uri, err := s.fetch(ctx)
	s.mu.Lock()
	if loaded {
		s.lastMiss = now
	}
	if err == nil {
		s.keys, s.jwksURI, s.loaded = keys, uri, true
	}
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// fetch reads discovery (once) and the JWKS, keeping RSA signing keys of at least 2048 bits.
func (s *keySet) fetch(ctx context.Context) (map[string]*rsa.PublicKey, string, error) {
	s.mu.RLock()
	uri := s.jwksURI
	s.mu.RUnlock()
	if uri == "" {
		var d struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := s.getJSON(ctx, s.cfg.Issuer+"/.well-known/openid-configuration", &d); err != nil {
			return nil, "", err
		}
		if d.Issuer != s.cfg.Issuer || d.JWKSURI == "" {
			return nil, "", fmt.Errorf("discovery names issuer %q, jwks_uri %q", d.Issuer, d.JWKSURI)
		}
		uri = d.JWKSURI
	}
	var set jose.JSONWebKeySet
	if err := s.getJSON(ctx, uri, &set); err != nil {
		return nil, "", err
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok || k.KeyID == "" || (k.Use != "" && k.Use != "sig") || pub.N.BitLen() < 2048 {
			continue
		}
		if _, dup := keys[k.KeyID]; dup {
			return nil, "", fmt.Errorf("duplicate kid %q in JWKS", k.KeyID)
		}
		keys[k.KeyID] = pub
	}
	return keys, uri, nil
}

// getJSON GETs u and decodes a 200 JSON answer of at most maxDocBytes.
func (s *keySet) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocBytes+1))
	if err != nil {
		return err
	}
	if len(body) > maxDocBytes {
		return fmt.Errorf("GET %s: document over %d bytes", u, maxDocBytes)
	}
	return json.Unmarshal(body, v)
}
