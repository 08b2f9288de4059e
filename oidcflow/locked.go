package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/envoy-bff/envoy-bff/session"
)

// LockStore is the part of the session store that serialises refreshes
// across replicas. session.Store satisfies it.
type LockStore interface {
	// TryLock takes the lock, or returns session.ErrLocked while another holder has it.
	TryLock(ctx context.Context, key session.LockKey) (*session.Lease, error)
	// WaitUnlock returns when the lock is released, after the poll interval, or when ctx ends.
	WaitUnlock(ctx context.Context, key session.LockKey) error
}

// releaseTimeout bounds giving a lock back after the holder's work, even when
// the holder's own context has ended.
const releaseTimeout = 2 * time.Second

// renewal describes one token for runLocked: how to read its stored state,
// when it is due and still usable, and how the lock holder renews it.
type renewal[T any] struct {
	kind string // kindSession or kindClient, for metrics
	key  session.LockKey
	// read returns the stored state; for a client token nothing stored is a nil T.
	read func(ctx context.Context) (T, error)
	// due reports whether t should be renewed now.
	due func(t T) bool
	// passable reports whether t may be sent upstream while another replica
	// renews it: valid, with room left for the request to reach the API.
	passable func(t T) bool
	// renew runs under the lock for a t that is due: one provider call and a
	// fenced write. It records its own outcome.
	renew func(ctx context.Context, t T, lease *session.Lease) (T, error)
}

// lockRunner runs the cluster-wide protocol: one refresh per expiry.
type lockRunner struct {
	store   LockStore
	metrics *Metrics
	logger  *slog.Logger
}

// runLocked renews seen's token at most once across every replica. The
// first to take the lock re-reads the stored state and renews it only if it
// is still due. Everyone else uses the still-valid token at once, or, once it
// has expired, waits for the lock to clear (a release signal, with a poll
// fallback) and re-reads, taking the lock itself if the holder died. ctx
// bounds every wait; running out of time is an error, never a logout.
func runLocked[T any](ctx context.Context, lr lockRunner, seen T, r renewal[T]) (T, error) {
	var zero T
	var waitStart time.Time
	defer func() {
		if !waitStart.IsZero() {
			lr.metrics.waited(r.kind, time.Since(waitStart))
		}
	}()
	for {
		lease, err := lr.store.TryLock(ctx, r.key)
		if err == nil {
			return holdLock(ctx, lr, r, lease)
		}
		if !errors.Is(err, session.ErrLocked) {
			lr.metrics.outcome(r.kind, outcomeStoreError)
			return zero, fmt.Errorf("take refresh lock: %w", err)
		}
		if r.passable(seen) {
			// Another replica is renewing; this token is good meanwhile, and
			// the new one arrives with a later read.
			lr.metrics.outcome(r.kind, outcomeLockBusy)
			return seen, nil
		}
		if waitStart.IsZero() {
			waitStart = time.Now()
		}
		if err := lr.store.WaitUnlock(ctx, r.key); err != nil {
			lr.metrics.outcome(r.kind, outcomeTimeout)
			return zero, fmt.Errorf("wait for another replica's refresh: %w", err)
		}
		cur, err := r.read(ctx)
		if err != nil {
			return zero, err
		}
		if !r.due(cur) {
			lr.metrics.outcome(r.kind, outcomeAlreadyFresh)
			return cur, nil
		}
		seen = cur
	}
}

// holdLock is the holder's part: re-read under the lock, renew if still due,
// give the lock back.
func holdLock[T any](ctx context.Context, lr lockRunner, r renewal[T], lease *session.Lease) (T, error) {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if err := lease.Release(rctx); err != nil {
			// It expires by its TTL; waiters find it gone by polling.
			lr.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: release refresh lock failed",
				slog.String("kind", r.kind), slog.Any("error", err))
		}
	}()
	cur, err := r.read(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	if !r.due(cur) {
		// Someone else renewed between our read and our lock: renewing again
		// would present a rotated-away refresh token.
		lr.metrics.outcome(r.kind, outcomeAlreadyFresh)
		return cur, nil
	}
	return r.renew(ctx, cur, lease)
}

// flightGroup shares one attempt per key among concurrent callers in this
// process. The attempt runs detached from any caller's cancellation, bounded
// by its own timeout, so a rotated token is never lost to an impatient caller.
type flightGroup[K comparable, T any] struct {
	mu    sync.Mutex
	calls map[K]*flightCall[T]
}

// flightCall is one shared attempt; val and err are set before done closes.
type flightCall[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// do returns the attempt in flight for key, starting fn if there is none.
func (g *flightGroup[K, T]) do(ctx context.Context, key K, timeout time.Duration, fn func(ctx context.Context) (T, error)) *flightCall[T] {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		return c
	}
	if g.calls == nil {
		g.calls = map[K]*flightCall[T]{}
	}
	c := &flightCall[T]{done: make(chan struct{})}
	g.calls[key] = c
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	go func() {
		defer cancel()
		c.val, c.err = fn(fctx)
		g.mu.Lock()
		delete(g.calls, key)
		g.mu.Unlock()
		close(c.done)
	}()
	return c
}
