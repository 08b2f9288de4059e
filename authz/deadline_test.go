package authz

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// hangingStore stands in for a Redis that accepted the command and never
// answers: Get blocks until its context ends, and records that context's
// deadline. The real store's fault paths run against redis-server in
// test/integration (TestRedisFaults); here only Check's own deadline matters.
type hangingStore struct {
	mu       sync.Mutex
	deadline time.Time
	had      bool
	hangGet  bool
}

func (h *hangingStore) Get(ctx context.Context, _ session.ID) (*sessionpb.Session, error) {
	h.mu.Lock()
	h.deadline, h.had = ctx.Deadline()
	h.mu.Unlock()
	if !h.hangGet {
		rec := validRecord()
		rec.AccessTokenExpiresAtUnixMs = t0.Add(-time.Second).UnixMilli() // expired: refresh needed
		return rec, nil
	}
	select {
	case <-ctx.Done():
		return nil, &storeErr{ctx.Err()}
	case <-time.After(10 * time.Second): // no deadline: the test fails on had, not on go test's timeout
		return nil, &storeErr{context.DeadlineExceeded}
	}
}

func (h *hangingStore) Delete(context.Context, session.ID) error { return nil }

// storeErr wraps a context error as the Redis store does: unavailable, never not-found.
type storeErr struct{ cause error }

func (e *storeErr) Error() string {
	return "get session: session store unavailable: " + e.cause.Error()
}
func (e *storeErr) Unwrap() []error {
	return []error{session.ErrUnavailable, e.cause}
}

// hangingRefresher is a provider (or refresh lock) that never answers; it
// records its context's deadline.
type hangingRefresher struct {
	mu       sync.Mutex
	deadline time.Time
	had      bool
}

func (h *hangingRefresher) Refresh(ctx context.Context, _ session.ID, _ *sessionpb.Session) (*sessionpb.Session, error) {
	h.mu.Lock()
	h.deadline, h.had = ctx.Deadline()
	h.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second): // no deadline: the test fails on had, not on go test's timeout
		return nil, context.DeadlineExceeded
	}
}

// TestCheckDeadline covers T53 inside the package: the refresh work of one
// Check ends at check_timeout, or checkReserve before the deadline Envoy
// sent, and the answer is a 503 that keeps the session. (The store read is
// bounded by the store itself: one Redis command within its budget, which
// the config loader keeps under check_timeout; TestRedisFaults/T53 shows it
// against a slow real Redis.)
func TestCheckDeadline(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		timeout    time.Duration
		envoy      time.Duration // the caller's deadline from now; 0 for none
		wantCapped bool          // the refresh saw Envoy's deadline minus checkReserve
	}{
		{name: "T53_hung_refresh_503_refresh_unavailable", timeout: 50 * time.Millisecond},
		{name: "T53_envoy_deadline_first", timeout: time.Minute, envoy: 200 * time.Millisecond, wantCapped: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hr := &hangingRefresher{}
			e := newEnv(t, func(c *Config, d *Deps) {
				c.CheckTimeout = tc.timeout
				d.Sessions = &hangingStore{} // answers at once, with an expired access token
				d.Refresher = hr
			})
			ctx := t.Context()
			var envoyDeadline time.Time
			if tc.envoy > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.envoy)
				defer cancel()
				envoyDeadline, _ = ctx.Deadline()
			}
			before := time.Now()
			resp, err := e.srv.Check(ctx, creq("GET", "/api/orders", e.apiHeaders(), userRoute()))
			if err != nil {
				t.Fatal(err)
			}
			if status(resp) != 503 || errorCode(t, resp) != "token_refresh_unavailable" {
				t.Fatalf("got %d %q, want 503 token_refresh_unavailable", status(resp), errorCode(t, resp))
			}
			if deniedHeader(resp, "retry-after") == "" || clearsCookie(resp) {
				t.Fatalf("a fault must say retry-after and keep the cookie: %v", resp.GetDeniedResponse().GetHeaders())
			}
			hr.mu.Lock()
			got, had := hr.deadline, hr.had
			hr.mu.Unlock()
			switch {
			case !had:
				t.Fatal("the refresh ran without a deadline")
			case tc.wantCapped && !got.Equal(envoyDeadline.Add(-checkReserve)):
				t.Fatalf("refresh deadline %s, want Envoy's %s minus %s", got, envoyDeadline, checkReserve)
			case !tc.wantCapped && (got.Before(before.Add(tc.timeout)) || got.After(time.Now().Add(tc.timeout))):
				t.Fatalf("refresh deadline %s is not check_timeout (%s) after the Check began", got, tc.timeout)
			}
		})
	}
}

// TestCheckTimeoutConfig: check_timeout is bounded, and errors name it.
func TestCheckTimeoutConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		d    time.Duration
		ok   bool
	}{
		{"default", DefaultConfig().CheckTimeout, true},
		{"zero", 0, false},
		{"too_short", time.Millisecond, false},
		{"too_long", 2 * time.Minute, false},
		{"short", 10 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.CheckTimeout = tc.d
			err := c.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("check_timeout %s: %v", tc.d, err)
			}
			if err != nil && !strings.Contains(err.Error(), "check_timeout: must be between") {
				t.Fatalf("error does not name the field: %v", err)
			}
		})
	}
}

// peekingStore answers every Peek from memory with an expired record, as
// the session cache does for a session it holds.
type peekingStore struct{ hangingStore }

func (p *peekingStore) Peek(session.ID) (*sessionpb.Session, bool) {
	rec := validRecord()
	rec.AccessTokenExpiresAtUnixMs = t0.Add(-time.Second).UnixMilli()
	return rec, true
}

// TestCheckDeadlineAfterACacheHit: a session served from the cache skips
// the store's deadline, but a refresh it needs still gets one (T53).
func TestCheckDeadlineAfterACacheHit(t *testing.T) {
	t.Parallel()
	ps := &peekingStore{hangingStore{hangGet: true}}
	rf := &deadlineRefresher{}
	e := newEnv(t, func(c *Config, d *Deps) {
		c.CheckTimeout = 50 * time.Millisecond
		d.Sessions = ps
		d.Refresher = rf
	})
	resp, err := e.srv.Check(t.Context(), creq("GET", "/api/orders", e.apiHeaders(), userRoute()))
	if err != nil {
		t.Fatal(err)
	}
	if status(resp) != 503 || errorCode(t, resp) != "token_refresh_unavailable" {
		t.Fatalf("got %d %q, want 503 token_refresh_unavailable", status(resp), errorCode(t, resp))
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.had {
		t.Fatal("Get was called although Peek answered")
	}
	if !rf.had.Load() {
		t.Fatal("the refresh after a cache hit ran without the Check's deadline")
	}
}

// deadlineRefresher fails at once, recording whether its context had a
// deadline before Envoy's (the test sends none).
type deadlineRefresher struct{ had atomic.Bool }

func (r *deadlineRefresher) Refresh(ctx context.Context, _ session.ID, _ *sessionpb.Session) (*sessionpb.Session, error) {
	_, ok := ctx.Deadline()
	r.had.Store(ok)
	return nil, context.DeadlineExceeded
}
