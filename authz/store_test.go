package authz

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// sessionCreator is how tests put records into the store.
type sessionCreator interface {
	Create(ctx context.Context, id session.ID, s *sessionpb.Session) error
}

// newMemoryStore is session's real in-memory store on the tests' clock (the
// one place to adapt if its constructor's signature changes).
func newMemoryStore(t testing.TB) (SessionReader, sessionCreator) {
	t.Helper()
	cfg := session.DefaultConfig()
	cfg.EncryptionKeys = session.KeyList{{ID: "k1", Secret: "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}}
	cfg.HashKey = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
	ring, err := session.NewKeyRing(cfg.EncryptionKeys, cfg.HashKey)
	if err != nil {
		t.Fatal(err)
	}
	m := session.NewMemoryStore(cfg, ring, func() time.Time { return t0 })
	return m, m
}

// lockedWriter lets parallel checks share one log buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newTestLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(&lockedWriter{w: buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
