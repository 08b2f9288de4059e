package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// Store operations, the `operation` label of envoy_bff_store_errors_total.
const (
	opGet            = "get"
	opCreate         = "create"
	opUpdate         = "update"
	opDelete         = "delete"
	opPutLoginState  = "put_login_state"
	opTakeLoginState = "take_login_state"
	opTryLock        = "try_lock"
	opWaitUnlock     = "wait_unlock"
	opGetClientToken = "get_client_token"
	opPutClientToken = "put_client_token"
	opFindSessions   = "find_sessions"
	opGetByRef       = "get_by_ref"
	opDeleteByRef    = "delete_by_ref"
	opUseOnce        = "use_once"
	opPing           = "ping"
	opGetDerived     = "get_derived_token"
	opPutDerived     = "put_derived_token"
	opGetWithDerived = "get_with_derived"
	opInspect        = "inspect"
)

var storeOps = [...]string{opGet, opCreate, opUpdate, opDelete, opPutLoginState, opTakeLoginState,
	opTryLock, opWaitUnlock, opGetClientToken, opPutClientToken, opFindSessions, opGetByRef,
	opDeleteByRef, opUseOnce, opPing, opGetDerived, opPutDerived, opGetWithDerived, opInspect}

// instrumented counts a Backend's failures by operation and frontend. Only
// errors that wrap ErrUnavailable count: ErrNotFound, ErrLocked and
// ErrConflict are answers, not faults.
type instrumented struct {
	Backend
	shared sharedGetter                  // Backend, when it has GetShared
	vec    *prometheus.CounterVec        // shared by the store and its views
	errs   map[string]prometheus.Counter // this view's, resolved once: recording never allocates
}

// sharedGetter is a Backend that can hand out the record it keeps
// (MemoryStore.GetShared).
type sharedGetter interface {
	GetShared(ctx context.Context, id ID) (*sessionpb.Session, error)
}

var _ Backend = (*instrumented)(nil)

// Instrument registers envoy_bff_store_errors_total{operation,frontend}
// with reg and returns b counting into it as frontend "default"; the views
// its Frontend returns count under their own name. Every series of b and of
// each view exists from its creation at 0, so an alert on its rate needs no
// "absent" case.
func Instrument(b Backend, reg prometheus.Registerer) (Backend, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "envoy_bff_store_errors_total",
		Help: "Session store failures (unreachable, timeout, closed; never not-found) by operation and frontend.",
	}, []string{"operation", "frontend"})
	if err := reg.Register(vec); err != nil {
		return nil, fmt.Errorf("register store metrics: %w", err)
	}
	if r, ok := b.(*RedisStore); ok {
		unreplicated := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "envoy_bff_store_unreplicated_writes_total",
			Help: "Token-carrying writes that session.redis.wait_replicas replicas did not acknowledge within wait_timeout (kept).",
		}, func() float64 { return float64(r.UnreplicatedWrites()) })
		if err := reg.Register(unreplicated); err != nil {
			return nil, fmt.Errorf("register store metrics: %w", err)
		}
	}
	return bindInstrumented(b, vec, DefaultFrontend), nil
}

// bindInstrumented resolves (and so creates at 0) frontend's series of vec
// for every operation, and wraps b to count into them.
func bindInstrumented(b Backend, vec *prometheus.CounterVec, frontend string) *instrumented {
	m := &instrumented{Backend: b, vec: vec, errs: make(map[string]prometheus.Counter, len(storeOps))}
	m.shared, _ = b.(sharedGetter)
	for _, op := range storeOps {
		m.errs[op] = vec.WithLabelValues(op, frontend)
	}
	return m
}

// Frontend implements Backend: the view counts its failures under its own
// frontend label.
func (m *instrumented) Frontend(name string, fc FrontendConfig) (Backend, error) {
	v, err := m.Backend.Frontend(name, fc)
	if err != nil {
		return nil, err
	}
	return bindInstrumented(v, m.vec, name), nil
}

// count records err against op if it is a store failure, and returns it.
// A nil m (no metrics) only returns it.
func (m *instrumented) count(op string, err error) error {
	if m != nil && err != nil && errors.Is(err, ErrUnavailable) {
		m.errs[op].Inc()
	}
	return err
}

// Get implements Store.
func (m *instrumented) Get(ctx context.Context, id ID) (*sessionpb.Session, error) {
	s, err := m.Backend.Get(ctx, id)
	return s, m.count(opGet, err)
}

// GetShared is Get for a caller that never modifies the record: the record
// the backend keeps when it can hand it out (the memory store), else Get's.
func (m *instrumented) GetShared(ctx context.Context, id ID) (*sessionpb.Session, error) {
	if m.shared == nil {
		return m.Get(ctx, id)
	}
	s, err := m.shared.GetShared(ctx, id)
	return s, m.count(opGet, err)
}

// Inspect implements Store.
func (m *instrumented) Inspect(ctx context.Context, id ID) (*sessionpb.Session, time.Time, error) {
	s, at, err := m.Backend.Inspect(ctx, id)
	return s, at, m.count(opInspect, err)
}

// Create implements Store.
func (m *instrumented) Create(ctx context.Context, id ID, s *sessionpb.Session) error {
	return m.count(opCreate, m.Backend.Create(ctx, id, s))
}

// Update implements Store.
func (m *instrumented) Update(ctx context.Context, id ID, s *sessionpb.Session, prevGeneration uint64) error {
	return m.count(opUpdate, m.Backend.Update(ctx, id, s, prevGeneration))
}

// Delete implements Store.
func (m *instrumented) Delete(ctx context.Context, id ID) error {
	return m.count(opDelete, m.Backend.Delete(ctx, id))
}

// PutLoginState implements Store.
func (m *instrumented) PutLoginState(ctx context.Context, state, browser string, ls *sessionpb.LoginState) error {
	return m.count(opPutLoginState, m.Backend.PutLoginState(ctx, state, browser, ls))
}

// TakeLoginState implements Store.
func (m *instrumented) TakeLoginState(ctx context.Context, state, browser string) (*sessionpb.LoginState, error) {
	ls, err := m.Backend.TakeLoginState(ctx, state, browser)
	return ls, m.count(opTakeLoginState, err)
}

// TryLock implements Store.
func (m *instrumented) TryLock(ctx context.Context, key LockKey) (*Lease, error) {
	l, err := m.Backend.TryLock(ctx, key)
	return l, m.count(opTryLock, err)
}

// WaitUnlock implements Store.
func (m *instrumented) WaitUnlock(ctx context.Context, key LockKey) error {
	return m.count(opWaitUnlock, m.Backend.WaitUnlock(ctx, key))
}

// GetClientToken implements Store.
func (m *instrumented) GetClientToken(ctx context.Context, name string) (*sessionpb.ClientToken, error) {
	t, err := m.Backend.GetClientToken(ctx, name)
	return t, m.count(opGetClientToken, err)
}

// PutClientToken implements Store.
func (m *instrumented) PutClientToken(ctx context.Context, name string, t *sessionpb.ClientToken) error {
	return m.count(opPutClientToken, m.Backend.PutClientToken(ctx, name, t))
}

// FindSessions implements Store.
func (m *instrumented) FindSessions(ctx context.Context, issuer, subject, sid string) ([]Ref, error) {
	refs, err := m.Backend.FindSessions(ctx, issuer, subject, sid)
	return refs, m.count(opFindSessions, err)
}

// GetByRef implements Store.
func (m *instrumented) GetByRef(ctx context.Context, ref Ref) (*sessionpb.Session, error) {
	s, err := m.Backend.GetByRef(ctx, ref)
	return s, m.count(opGetByRef, err)
}

// DeleteByRef implements Store.
func (m *instrumented) DeleteByRef(ctx context.Context, ref Ref) error {
	return m.count(opDeleteByRef, m.Backend.DeleteByRef(ctx, ref))
}

// UseOnce implements Store.
func (m *instrumented) UseOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	first, err := m.Backend.UseOnce(ctx, key, ttl)
	return first, m.count(opUseOnce, err)
}

// GetDerivedToken implements Store.
func (m *instrumented) GetDerivedToken(ctx context.Context, id ID, profile string) (*sessionpb.ClientToken, error) {
	t, err := m.Backend.GetDerivedToken(ctx, id, profile)
	return t, m.count(opGetDerived, err)
}

// PutDerivedToken implements Store.
func (m *instrumented) PutDerivedToken(ctx context.Context, id ID, profile string, t *sessionpb.ClientToken) error {
	return m.count(opPutDerived, m.Backend.PutDerivedToken(ctx, id, profile, t))
}

// GetWithDerived implements Store.
func (m *instrumented) GetWithDerived(ctx context.Context, id ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, error) {
	s, t, err := m.Backend.GetWithDerived(ctx, id, profile)
	return s, t, m.count(opGetWithDerived, err)
}

// Ping implements Backend.
func (m *instrumented) Ping(ctx context.Context) error {
	return m.count(opPing, m.Backend.Ping(ctx))
}

// Register exposes the cache's counters with reg: hits, misses,
// invalidations, resets, ack timeouts, entries, and whether it serves. They
// carry the cache's frontend as a label, so every frontend's cache
// registers in one registry. unregister takes them out again, for a
// frontend that a config reload replaces or removes.
func (c *Cache) Register(reg prometheus.Registerer) (unregister func(), err error) {
	labels := prometheus.Labels{"frontend": c.store.frontend}
	counter := func(name, help string, v func(CacheStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(v(c.Stats())) })
	}
	cols := []prometheus.Collector{
		counter("envoy_bff_session_cache_hits_total", "Session reads served from the in-process cache.", func(s CacheStats) uint64 { return s.Hits }),
		counter("envoy_bff_session_cache_misses_total", "Session reads that went to Redis.", func(s CacheStats) uint64 { return s.Misses }),
		counter("envoy_bff_session_cache_invalidations_total", "Session change messages applied to the cache.", func(s CacheStats) uint64 { return s.Invalidations }),
		counter("envoy_bff_session_cache_resets_total", "Times the cache was emptied because its subscription was (re)established or lost.", func(s CacheStats) uint64 { return s.Resets }),
		counter("envoy_bff_session_cache_ack_timeouts_total", "Deletions that stopped waiting for another replica's cache to acknowledge.", func(s CacheStats) uint64 { return s.AckTimeouts }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "envoy_bff_session_cache_entries", Help: "Sessions held in the in-process cache.", ConstLabels: labels}, func() float64 { return float64(c.Stats().Entries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "envoy_bff_session_cache_live", Help: "1 while the cache's change subscription is up and it serves reads.", ConstLabels: labels}, func() float64 {
			if c.Stats().Live {
				return 1
			}
			return 0
		}),
	}
	unregister = func() {
		for _, col := range cols {
			reg.Unregister(col)
		}
	}
	for _, col := range cols {
		if err := reg.Register(col); err != nil {
			unregister()
			return nil, fmt.Errorf("register session cache metrics: %w", err)
		}
	}
	return unregister, nil
}
