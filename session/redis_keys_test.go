package session_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// TestRedisRotateInPlace: rotating a live Redis store's ring keeps its
// sessions, and SealedKeyID shows a record moving to the new primary when
// it is next written, which is what an operator waits for before removing
// the old key.
func TestRedisRotateInPlace(t *testing.T) {
	t.Parallel()
	st := newRedisEnv(t).store(t, nil)
	ring := st.KeyRing()
	oldPrimary := ring.PrimaryKeyID()
	id, err := session.NewID(strings.NewReader(strings.Repeat("r", session.IDLen)))
	if err != nil {
		t.Fatal(err)
	}
	rec := &sessionpb.Session{Subject: "u", Issuer: "https://idp"}
	mustCreate(t, st, id, rec)
	if got, err := st.SealedKeyID(t.Context(), id); err != nil || got != oldPrimary {
		t.Fatalf("SealedKeyID = %q, %v; want %q", got, err, oldPrimary)
	}

	keys := append(session.KeyList{{ID: "k9", Secret: "dGhpcmQta2V5LXRoaXJkLWtleS10aGlyZC1rZXktMy4="}}, sessiontest.Config().EncryptionKeys...)
	if err := ring.Rotate(keys); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get after adding a primary: %v", err)
	}
	if k, _ := st.SealedKeyID(t.Context(), id); k != oldPrimary {
		t.Errorf("a read resealed the record with %q", k)
	}
	if err := st.Update(t.Context(), id, got, got.Generation); err != nil {
		t.Fatal(err)
	}
	if k, err := st.SealedKeyID(t.Context(), id); err != nil || k != "k9" {
		t.Fatalf("after an update SealedKeyID = %q, %v; want k9", k, err)
	}

	if err := ring.Rotate(keys[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(t.Context(), id); err != nil {
		t.Fatalf("a record resealed with k9 after removing the old key: %v", err)
	}
	var unknown session.ID
	if _, err := st.SealedKeyID(t.Context(), unknown); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("SealedKeyID of an absent session = %v, want ErrNotFound", err)
	}
}
