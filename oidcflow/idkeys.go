package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// idTokenKeys checks ID-token signatures for go-oidc's verifier against the
// provider's key set that logout tokens use too: one set, fetched with the
// same 1 MiB bound and key checks, and kept when a later fetch fails. ID
// tokens come straight from the token endpoint, so an unknown kid (a
// rotation) refetches at once, without the cooldown that guards against
// forged logout tokens. go-oidc flattens a KeySet's error into text, so a
// set that cannot be fetched is also reported through the context
// (withKeyErrors), letting verifyIDToken tell a provider outage from a bad token.
type idTokenKeys struct {
	cache *jwksCache
	algs  []jose.SignatureAlgorithm
}

var _ oidc.KeySet = idTokenKeys{}

// VerifySignature implements oidc.KeySet.
func (k idTokenKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("parse id token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("id token: want one signature")
	}
	h := jws.Signatures[0].Header
	var keys []jose.JSONWebKey
	if h.KeyID == "" {
		keys, err = k.cache.all(ctx)
	} else {
		var key *jose.JSONWebKey
		if key, err = k.cache.lookup(ctx, h.KeyID, true); err == nil {
			keys = []jose.JSONWebKey{*key}
		}
	}
	if err != nil {
		noteKeyError(ctx, err)
		return nil, fmt.Errorf("id token key: %w", err)
	}
	for _, key := range keys {
		if key.Algorithm != "" && key.Algorithm != h.Algorithm {
			continue
		}
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("id token: no provider key verifies the signature")
}

// keyErrorsKey carries a *keyErrors through go-oidc's verifier.
type keyErrorsKey struct{}

// keyErrors records that the key set could not be fetched during one verification.
type keyErrors struct{ err error }

// withKeyErrors returns ctx carrying a fresh record for one verification.
func withKeyErrors(ctx context.Context) (context.Context, *keyErrors) {
	ke := &keyErrors{}
	return context.WithValue(ctx, keyErrorsKey{}, ke), ke
}

// noteKeyError records err in ctx's record if it is a key-set outage.
func noteKeyError(ctx context.Context, err error) {
	if ke, ok := ctx.Value(keyErrorsKey{}).(*keyErrors); ok && errors.Is(err, errKeysUnavailable) {
		ke.err = err
	}
}

// allowedAlgs are the provider's advertised signing algorithms that envoy-bff
// accepts (asymmetric only), or RS256, the one every provider must support.
func allowedAlgs(advertised []string) []jose.SignatureAlgorithm {
	var out []jose.SignatureAlgorithm
	for _, a := range advertised {
		if alg := jose.SignatureAlgorithm(a); slices.Contains(logoutAlgs, alg) && !slices.Contains(out, alg) {
			out = append(out, alg)
		}
	}
	if len(out) == 0 {
		out = []jose.SignatureAlgorithm{jose.RS256}
	}
	return out
}
