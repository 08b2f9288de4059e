package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// Sweeper pacing: how often Run looks for expired entries, and how many it
// examines per tick (Go's random map order spreads the work over the map).
const (
	sweepInterval = 30 * time.Second
	sweepBatch    = 1024
)

var _ Backend = (*MemoryStore)(nil)

// errClosed is what a closed memory store answers, wrapped in ErrUnavailable.
var errClosed = errors.New("store closed")

// MemoryStore keeps sealed records in this process: for a single replica and
// the demo. It seals exactly as RedisStore does, so both paths are tested
// alike (a record under a retired key ends, a record moved to another key
// does not open). Like the session cache, it also keeps the record a Check
// last opened, in the same process as the keys that open it, so sealing
// in memory never hid it from someone who can read that memory.
type MemoryStore struct {
	cfg  Config
	ring *KeyRing
	now  func() time.Time
	mem  *memData
	// ks starts every logical key of this store's frontend; frontend is its
	// name. view is set on the stores Frontend returns, which share mem
	// with the store that made them and do not own it.
	ks       keyspace
	frontend string
	view     bool
}

// memData is the state shared by stores over the same map (see withKeyRing)
// and by every frontend's view of it; their logical keys start with their
// keyspace, so one map holds them apart and one sweeper serves them all.
type memData struct {
	mu      sync.Mutex
	entries map[string]*memEntry              // logical store key → entry
	locks   map[string]*memLock               // logical lock key → holder
	index   map[memIndexKey]map[Ref]time.Time // index → ref → the session's absolute expiry
	closed  bool
}

// memIndexKey names one index of one frontend: the sweeper needs the
// keyspace to find the sessions its refs name.
type memIndexKey struct {
	ks   keyspace
	name string
}

type memEntry struct {
	sealed []byte
	// opened is the session sealed holds, decoded by the first read and
	// shared by the reads after it that never modify it (GetShared), so a
	// Check opens and decodes once per write, not per request. Each write
	// stores a new entry, so it never goes stale except by a key rotation,
	// which its key set catches.
	opened   atomic.Pointer[openedSession]
	gen      uint64
	expires  time.Time // idle expiry (sessions), TTL (login states), the latest token's expiry (derived tokens)
	absolute time.Time // sessions only
	// tokens holds a session's derived tokens by profile (the entry under
	// keyspace.derivedTokens); changed only under mu.
	tokens map[string]memToken
}

// openedSession is a session as a key set opened it.
type openedSession struct {
	s    *sessionpb.Session
	keys *keySet
}

// memToken is one sealed derived token and its expiry.
type memToken struct {
	sealed  []byte
	expires time.Time
}

func (e *memEntry) expired(now time.Time) bool {
	return !now.Before(e.expires) || (!e.absolute.IsZero() && !now.Before(e.absolute))
}

// NewMemoryStore returns an empty store on the given clock (time.Now if nil).
// Call Run to sweep expired entries.
func NewMemoryStore(cfg Config, ring *KeyRing, now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{cfg: cfg, ring: ring, now: now, mem: &memData{entries: map[string]*memEntry{}}, frontend: DefaultFrontend}
}

// Frontend implements Backend: a view over the same entries in which every
// key of frontend name is its own, running on fc's lifetimes. Run on any
// view (or the store) sweeps the entries of all of them.
func (m *MemoryStore) Frontend(name string, fc FrontendConfig) (Backend, error) {
	ks, err := frontendKeyspace(name, fc)
	if err != nil {
		return nil, fmt.Errorf("open session store view: %w", err)
	}
	return &MemoryStore{cfg: fc.applyTo(m.cfg), ring: m.ring, now: m.now, mem: m.mem, ks: ks, frontend: name, view: true}, nil
}

// KeyRing implements Backend.
func (m *MemoryStore) KeyRing() *KeyRing { return m.ring }

// withKeyRing is a store over the same entries that seals with ring.
func (m *MemoryStore) withKeyRing(ring *KeyRing) *MemoryStore {
	c := *m
	c.ring = ring
	return &c
}

// Get implements Store: it renews the idle timeout and deletes a record past
// its absolute lifetime. The record is the caller's own.
func (m *MemoryStore) Get(ctx context.Context, id ID) (*sessionpb.Session, error) {
	s, err := m.GetShared(ctx, id)
	if err != nil {
		return nil, err
	}
	return proto.CloneOf(s), nil
}

// GetShared is Get for a caller that never modifies the record it gets (a
// Check): the record the store keeps, opened and decoded once per write
// rather than once per request, and shared with every other such caller.
func (m *MemoryStore) GetShared(_ context.Context, id ID) (*sessionpb.Session, error) {
	s, _, err := m.getKeyed(m.sessionKeyOf(id), "")
	return s, err
}

// sessionKeyOf is m.ks.session(m.ring.HashID(id)) in one allocation.
func (m *MemoryStore) sessionKeyOf(id ID) string {
	var b strings.Builder
	b.Grow(len(m.ks) + len(sessionKind) + hashLen)
	b.WriteString(string(m.ks))
	b.WriteString(sessionKind)
	m.ring.writeHashID(&b, id)
	return b.String()
}

// get is GetShared of the session whose hash is hash and, when profile is
// set, its derived token of profile, read under the same lock.
func (m *MemoryStore) get(hash, profile string) (*sessionpb.Session, *memToken, error) {
	return m.getKeyed(m.ks.session(hash), profile)
}

// getKeyed is get of the session whose logical key is key. The record is
// shared: callers that hand it out clone it.
func (m *MemoryStore) getKeyed(key, profile string) (*sessionpb.Session, *memToken, error) {
	const op = "get session"
	hash := key[len(m.ks)+len(sessionKind):]
	now := m.now()
	m.mem.mu.Lock()
	e, err := m.mem.live(key, now)
	if err != nil {
		// The session timed out (or never was): its derived tokens go with it.
		delete(m.mem.entries, m.ks.derivedTokens(hash))
		m.mem.mu.Unlock()
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	e.expires = now.Add(m.cfg.IdleTimeout)
	sealed := e.sealed // never modified in place, so safe to use unlocked
	var tok *memToken
	if profile != "" {
		tok = m.mem.tokenLocked(m.ks.derivedTokens(hash), profile, now)
	}
	m.mem.mu.Unlock()

	s, err := m.sessionOf(key, e, sealed)
	if err != nil {
		return nil, nil, notFound(op, err)
	}
	if _, ok := sessionTTL(s, m.cfg.IdleTimeout, now); !ok {
		m.mem.deleteSessionIf(m.ks, hash, e)
		return nil, nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return s, tok, nil
}

// sessionOf is the session in e, whose sealed record is sealed under key:
// the one an earlier read opened under the ring's current keys, else
// opened now and kept for the next read. A key set swapped in meanwhile
// (a rotation, a retired key) makes the kept one stale, so a record sealed
// under a retired key stops opening exactly as it does in Redis.
func (m *MemoryStore) sessionOf(key string, e *memEntry, sealed []byte) (*sessionpb.Session, error) {
	keys := m.ring.set.Load() // before opening: a swap meanwhile leaves the kept one stale
	if o := e.opened.Load(); o != nil && o.keys == keys {
		return o.s, nil
	}
	s, err := openSession(m.ring, key, sealed)
	if err != nil {
		return nil, err
	}
	e.opened.Store(&openedSession{s: s, keys: keys})
	return s, nil
}

// Inspect implements Store: Get without renewing the idle timeout. A
// record past its absolute lifetime reads as ErrNotFound and is left to
// the sweeper, so looking never writes.
func (m *MemoryStore) Inspect(_ context.Context, id ID) (*sessionpb.Session, time.Time, error) {
	const op = "inspect session"
	key := m.ks.session(m.ring.HashID(id))
	now := m.now()
	m.mem.mu.Lock()
	e, err := m.mem.live(key, now)
	var (
		sealed  []byte
		expires time.Time
	)
	if err == nil {
		sealed, expires = e.sealed, e.expires // sealed is never modified in place
	}
	m.mem.mu.Unlock()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", op, err)
	}
	s, err := m.sessionOf(key, e, sealed)
	if err != nil {
		return nil, time.Time{}, notFound(op, err)
	}
	if _, ok := sessionTTL(s, m.cfg.IdleTimeout, now); !ok {
		return nil, time.Time{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return proto.CloneOf(s), idleEnd(s, expires), nil
}

// Create implements Store. It sets s.Generation to 1 and fills the creation
// time and absolute expiry when they are zero.
func (m *MemoryStore) Create(_ context.Context, id ID, s *sessionpb.Session) error {
	const op = "create session"
	now := m.now()
	n, err := prepareCreate(m.ring, m.ks, m.cfg, id, s, now)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	hash := n.hash
	e := &memEntry{sealed: n.sealed, gen: 1, expires: now.Add(n.ttl), absolute: time.UnixMilli(s.AbsoluteExpiresAtUnixMs)}
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	if m.mem.closed {
		return fmt.Errorf("%s: %w: %w: %w", op, ErrUnavailable, ErrNotWritten, errClosed)
	}
	m.mem.entries[m.ks.session(hash)] = e
	m.mem.indexLocked(m.ring, m.ks, Ref(hash), s)
	return nil
}

// Update implements Store: a compare-and-set on the stored generation. On
// success s.Generation is prevGeneration+1.
func (m *MemoryStore) Update(_ context.Context, id ID, s *sessionpb.Session, prevGeneration uint64) error {
	const op = "update session"
	if s == nil {
		return fmt.Errorf("%s: %w", op, errNilRecord)
	}
	now := m.now()
	key := m.ks.session(m.ring.HashID(id))
	ttl, ok := sessionTTL(s, m.cfg.IdleTimeout, now)
	if !ok {
		m.mem.mu.Lock()
		delete(m.mem.entries, key)
		delete(m.mem.entries, m.ks.derivedTokens(m.ring.HashID(id)))
		m.mem.mu.Unlock()
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	old := s.Generation
	sealed, err := sealSession(m.ring, key, s, prevGeneration+1)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	e, err := m.mem.live(key, now)
	if err == nil && e.gen != prevGeneration {
		err = ErrConflict
	}
	if err != nil {
		s.Generation = old // the caller's record did not become the stored one
		return fmt.Errorf("%s: %w", op, err)
	}
	m.mem.entries[key] = &memEntry{sealed: sealed, gen: prevGeneration + 1, expires: now.Add(ttl), absolute: time.UnixMilli(s.AbsoluteExpiresAtUnixMs)}
	return nil
}

// Delete implements Store.
func (m *MemoryStore) Delete(ctx context.Context, id ID) error {
	return m.DeleteByRef(ctx, refOf(m.ring, id))
}

// PutLoginState implements Store.
func (m *MemoryStore) PutLoginState(_ context.Context, state, browser string, ls *sessionpb.LoginState) error {
	const op = "put login state"
	if !validLoginKey(state, browser) {
		return fmt.Errorf("%s: state and browser must be 1-%d bytes, state without NUL", op, maxStateLen)
	}
	key := m.ks.loginState(m.ring.hashLoginState(state, browser))
	sealed, err := sealLoginState(m.ring, key, ls)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	now := m.now()
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	if m.mem.closed {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, errClosed)
	}
	m.mem.entries[key] = &memEntry{sealed: sealed, expires: now.Add(m.cfg.LoginStateTTL)}
	return nil
}

// TakeLoginState implements Store: lookup and delete happen under one lock.
func (m *MemoryStore) TakeLoginState(_ context.Context, state, browser string) (*sessionpb.LoginState, error) {
	const op = "take login state"
	if !validLoginKey(state, browser) { // no login cookie: nothing to take, no lookup
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	key := m.ks.loginState(m.ring.hashLoginState(state, browser))
	now := m.now()
	m.mem.mu.Lock()
	e, err := m.mem.live(key, now)
	if err == nil {
		delete(m.mem.entries, key)
	}
	m.mem.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ls, err := openLoginState(m.ring, key, e.sealed)
	if err != nil {
		return nil, notFound(op, err)
	}
	return ls, nil
}

// Ping reports whether the store still serves, for /readyz.
func (m *MemoryStore) Ping(context.Context) error {
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	if m.mem.closed {
		return fmt.Errorf("ping session store: %w: %w", ErrUnavailable, errClosed)
	}
	return nil
}

// Close drops every entry of every frontend; later calls answer
// ErrUnavailable. On a view it does nothing: the store that made it owns
// the entries.
func (m *MemoryStore) Close() error {
	if m.view {
		return nil
	}
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	m.mem.closed = true
	m.mem.entries = nil
	m.mem.index = nil
	return nil
}

// Run sweeps expired entries every 30 seconds until ctx ends, so memory
// holds only live sessions. Each tick examines a bounded number of entries.
// The entries of every frontend's view are swept, whichever of them runs
// it: one Run per store is enough.
func (m *MemoryStore) Run(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.sweep(sweepBatch)
		}
	}
}

// sweep examines up to limit entries and removes the expired ones, returning
// how many it removed.
func (m *MemoryStore) sweep(limit int) int {
	now := m.now()
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	removed, seen := 0, 0
	for k, e := range m.mem.entries {
		if seen == limit {
			break
		}
		seen++
		if e.expired(now) {
			delete(m.mem.entries, k)
			removed++
		}
	}
	m.mem.sweepIndexesLocked(now, limit)
	return removed
}

// live returns the unexpired entry under key, deleting an expired one.
// The caller holds mu.
func (d *memData) live(key string, now time.Time) (*memEntry, error) {
	if d.closed {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, errClosed)
	}
	e, ok := d.entries[key]
	if !ok {
		return nil, ErrNotFound
	}
	if e.expired(now) {
		delete(d.entries, key)
		return nil, ErrNotFound
	}
	return e, nil
}

// deleteSessionIf removes the session hash of keyspace ks, and its derived
// tokens, only if its key still holds e, so a concurrent write wins.
func (d *memData) deleteSessionIf(ks keyspace, hash string, e *memEntry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if key := ks.session(hash); d.entries[key] == e {
		delete(d.entries, key)
		delete(d.entries, ks.derivedTokens(hash))
	}
}
