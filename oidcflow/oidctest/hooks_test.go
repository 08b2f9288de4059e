package oidctest

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
)

// TestHoldRefreshResponses: a held answer has already rotated the token; the
// answer arrives on release with tokens that work.
func TestHoldRefreshResponses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	first := e.login(t)
	release := e.p.HoldRefreshResponses()
	got := make(chan tokenResult, 1)
	go func() { got <- e.refresh(t, first.RefreshToken) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.p.HeldRefreshResponses() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the refresh answer was not held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := e.p.Stats(); s.RefreshTokenGrants != 1 {
		t.Fatalf("grant not issued before the answer: %+v", s)
	}
	release()
	second := <-got
	if second.Status != http.StatusOK || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("held answer: %d %q", second.Status, second.Error)
	}
	if third := e.refresh(t, second.RefreshToken); third.Status != http.StatusOK {
		t.Fatalf("the held answer's token: %d %q", third.Status, third.Error)
	}
	release() // idempotent
}

// TestRevocationLog: every presented token is logged in order; with
// RevokeOnlyPresentedToken the rest of the family survives.
func TestRevocationLog(t *testing.T) {
	t.Parallel()
	for _, only := range []bool{false, true} {
		t.Run(map[bool]string{false: "family", true: "presented_only"}[only], func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *ProviderConfig) { c.RevokeOnlyPresentedToken = only })
			first := e.login(t)
			second := e.refresh(t, first.RefreshToken)
			for _, tok := range []string{first.RefreshToken, "unknown"} {
				if r := e.postForm(t, PathRevoke, url.Values{"token": {tok}}, testClient, testSecret); r.Status != http.StatusOK {
					t.Fatalf("revoke: %d", r.Status)
				}
			}
			if log := e.p.RevocationLog(); !slices.Equal(log, []string{first.RefreshToken, "unknown"}) {
				t.Fatalf("log %q", log)
			}
			if !e.p.IsRevoked(first.RefreshToken) {
				t.Fatal("presented token not revoked")
			}
			if got := e.p.IsRevoked(second.RefreshToken); got == only {
				t.Fatalf("newer token revoked = %v with RevokeOnlyPresentedToken %v", got, only)
			}
		})
	}
}
