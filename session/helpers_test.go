package session_test

import (
	"testing"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

func mustCreate(t *testing.T, s session.Store, id session.ID, rec *sessionpb.Session) {
	t.Helper()
	if err := s.Create(t.Context(), id, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

func loginStateForTest() *sessionpb.LoginState {
	return &sessionpb.LoginState{Nonce: "n", CodeVerifier: "v", ReturnUrl: "/"}
}
