package oidcflow

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits on the provider's key set (T40).
const (
	maxJWKSBytes  = 1 << 20
	minRSABits    = 2048
	jwksFetchWait = 5 * time.Second
)

// errUnknownKeyID means no key in the provider's set has the token's kid.
var errUnknownKeyID = errors.New("no provider key with that kid")

// errKeysUnavailable means the provider's key set could not be fetched (and
// the key asked for is not among those kept from before).
var errKeysUnavailable = errors.New("provider key set unavailable")

// jwksCache holds the provider's signing keys, for ID tokens and logout
// tokens alike. A kid it does not know in a logout token triggers at most
// one refetch per cooldown, shared by every concurrent caller, so forged
// tokens with random kids cannot make it hammer the provider (T37); an ID
// token's unknown kid refetches at once (see lookup). A failed or
// unacceptable fetch keeps the previous set (T40, T62).
type jwksCache struct {
	url      string
	client   *http.Client
	cooldown time.Duration
	now      func() time.Time

	mu        sync.Mutex
	keys      map[string]jose.JSONWebKey
	lastFetch time.Time
	inflight  chan struct{} // closed when the running fetch ends
	fetchErr  error         // the last fetch's failure, nil after a success
	nfetch    int
}

func newJWKSCache(url string, client *http.Client, cooldown time.Duration, now func() time.Time) *jwksCache {
	if client == nil {
		client = &http.Client{Timeout: jwksFetchWait}
	}
	return &jwksCache{url: url, client: client, cooldown: cooldown, now: now}
}

// key returns the key named kid for a logout token, fetching the set first
// if it is unknown and the cooldown allows.
func (c *jwksCache) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	return c.lookup(ctx, kid, false)
}

// lookup returns the key named kid. An unknown kid refetches the set, once
// per cooldown for untrusted callers (logout tokens anyone can post), at
// once for trusted ones (ID tokens straight from the token endpoint); every
// caller waits for the fetch already running rather than starting another.
// When the set cannot be fetched and kid is not known, the error wraps
// errKeysUnavailable: the provider failed, which proves nothing about the token.
func (c *jwksCache) lookup(ctx context.Context, kid string, trusted bool) (*jose.JSONWebKey, error) {
	c.mu.Lock()
	if k, ok := c.keys[kid]; ok {
		c.mu.Unlock()
		return &k, nil
	}
	wait := c.inflight
	if wait == nil {
		if !trusted && !c.lastFetch.IsZero() && c.now().Sub(c.lastFetch) < c.cooldown {
			c.mu.Unlock()
			return nil, errUnknownKeyID
		}
		wait = make(chan struct{})
		c.inflight, c.lastFetch = wait, c.now()
		c.nfetch++
		c.mu.Unlock()
		// Detached: one caller giving up must not cancel the fetch for all.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchWait)
		keys, err := c.download(fctx)
		cancel()
		c.mu.Lock()
		if err == nil {
			c.keys = keys
		}
		c.fetchErr = err
		c.inflight = nil
		close(wait)
		c.mu.Unlock()
	} else {
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[kid]; ok {
		return &k, nil
	}
	if c.fetchErr != nil {
		return nil, fmt.Errorf("%w: %w", errKeysUnavailable, c.fetchErr)
	}
	return nil, errUnknownKeyID
}

// all returns every key, fetching the set first if it was never fetched
// (for a token without kid).
func (c *jwksCache) all(ctx context.Context) ([]jose.JSONWebKey, error) {
	c.mu.Lock()
	loaded := c.keys != nil
	c.mu.Unlock()
	if !loaded {
		if _, err := c.lookup(ctx, "", true); err != nil && !errors.Is(err, errUnknownKeyID) {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]jose.JSONWebKey, 0, len(c.keys))
	for _, k := range c.keys {
		out = append(out, k)
	}
	return out, nil
}

// fetches reports how many fetches were started.
func (c *jwksCache) fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nfetch
}

// download fetches and checks the whole set: at most 1 MiB of JSON, unique
// kids, public signing keys only, RSA of at least 2048 bits.
func (c *jwksCache) download(ctx context.Context) (map[string]jose.JSONWebKey, error) {
	if c.url == "" {
		return nil, errors.New("provider has no jwks_uri")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("fetch jwks: larger than 1 MiB")
	}
	return parseJWKS(body)
}

// parseJWKS accepts a key set only if every signing key in it is usable.
func parseJWKS(body []byte) (map[string]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	keys := make(map[string]jose.JSONWebKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.KeyID == "" {
			return nil, errors.New("parse jwks: a signing key without kid")
		}
		if _, dup := keys[k.KeyID]; dup {
			return nil, fmt.Errorf("parse jwks: kid %q appears twice", k.KeyID)
		}
		if !k.Valid() || !k.IsPublic() {
			return nil, fmt.Errorf("parse jwks: key %q is not a valid public key", k.KeyID)
		}
		switch pk := k.Key.(type) {
		case *rsa.PublicKey:
			if pk.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("parse jwks: RSA key %q has %d bits", k.KeyID, pk.N.BitLen())
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("parse jwks: key %q is of an unsupported type", k.KeyID)
		}
		keys[k.KeyID] = k
	}
	return keys, nil
}
