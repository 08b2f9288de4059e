package sessiontest

import (
	"context"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/session"
)

// RunCache keeps c's change subscription running until the test ends, and
// returns once the cache serves (it has subscribed), failing the test after
// 5 s.
func RunCache(t testing.TB, c *session.Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for range 500 {
		if c.Stats().Live {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("session cache never subscribed")
}
