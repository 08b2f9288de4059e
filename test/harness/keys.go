package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/envoy-bff/envoy-bff/session"
)

// SessionKeyID names the encryption key that sealed the session a cookie
// value names, read from the stored record's clear envelope header in the
// stack's Redis: what a key rotation test checks. It needs only the hash key,
// so it works whatever keys the replicas hold now.
func (s *Stack) SessionKeyID(ctx context.Context, cookieValue string) (string, error) {
	if s.RedisURL == "" {
		return "", errors.New("read session key id: the stack has no Redis")
	}
	cfg := session.DefaultConfig()
	cfg.Backend = session.BackendRedis
	cfg.Redis.URL = s.RedisURL
	cfg.EncryptionKeys = session.KeyList{{ID: "k1", Secret: s.EncryptionKey}} // required, never used: nothing is opened
	cfg.HashKey = s.HashKey
	b, err := session.OpenBackend(cfg, time.Now)
	if err != nil {
		return "", err
	}
	defer b.Close()
	rs, ok := b.(*session.RedisStore)
	if !ok {
		return "", fmt.Errorf("read session key id: backend is %T, not Redis", b)
	}
	id, err := session.ParseID(cookieValue)
	if err != nil {
		return "", err
	}
	return rs.SealedKeyID(ctx, id)
}
