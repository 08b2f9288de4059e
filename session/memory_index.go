package session

import (
	"context"
	"fmt"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// indexLocked adds ref to s's indexes in keyspace ks. The caller holds mu.
func (d *memData) indexLocked(ring *KeyRing, ks keyspace, ref Ref, s *sessionpb.Session) {
	if d.index == nil {
		d.index = map[memIndexKey]map[Ref]time.Time{}
	}
	for _, name := range indexesOf(ring, s) {
		idx := memIndexKey{ks, name}
		if d.index[idx] == nil {
			d.index[idx] = map[Ref]time.Time{}
		}
		d.index[idx][ref] = absExpiry(s)
	}
}

// unindexLocked removes ref from s's indexes in keyspace ks. The caller holds mu.
func (d *memData) unindexLocked(ring *KeyRing, ks keyspace, ref Ref, s *sessionpb.Session) {
	for _, name := range indexesOf(ring, s) {
		idx := memIndexKey{ks, name}
		delete(d.index[idx], ref)
		if len(d.index[idx]) == 0 {
			delete(d.index, idx)
		}
	}
}

// GetByRef implements Store without renewing the idle timeout.
func (m *MemoryStore) GetByRef(_ context.Context, ref Ref) (*sessionpb.Session, error) {
	const op = "get session by ref"
	key := m.ks.session(string(ref))
	now := m.now()
	m.mem.mu.Lock()
	e, err := m.mem.live(key, now)
	m.mem.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	s, err := openSession(m.ring, key, e.sealed)
	if err != nil {
		return nil, notFound(op, err)
	}
	return s, nil
}

// DeleteByRef implements Store: the record, its derived tokens and its
// index entries go together.
func (m *MemoryStore) DeleteByRef(_ context.Context, ref Ref) error {
	key := m.ks.session(string(ref))
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	if m.mem.closed {
		return fmt.Errorf("delete session: %w: %w", ErrUnavailable, errClosed)
	}
	delete(m.mem.entries, m.ks.derivedTokens(string(ref)))
	e, ok := m.mem.entries[key]
	if !ok {
		return nil
	}
	delete(m.mem.entries, key)
	if s, err := openSession(m.ring, key, e.sealed); err == nil {
		m.mem.unindexLocked(m.ring, m.ks, ref, s)
	}
	return nil
}

// FindSessions implements Store, pruning entries whose session is gone.
func (m *MemoryStore) FindSessions(_ context.Context, issuer, subject, sid string) ([]Ref, error) {
	idx := memIndexKey{m.ks, queryIndex(m.ring, issuer, subject, sid)}
	now := m.now()
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	if m.mem.closed {
		return nil, fmt.Errorf("find sessions: %w: %w", ErrUnavailable, errClosed)
	}
	var live []Ref
	for ref, exp := range m.mem.index[idx] {
		if _, err := m.mem.live(m.ks.session(string(ref)), now); err != nil || !now.Before(exp) {
			delete(m.mem.index[idx], ref)
			continue
		}
		live = append(live, ref)
	}
	if len(m.mem.index[idx]) == 0 {
		delete(m.mem.index, idx)
	}
	return live, nil
}

// UseOnce implements Store.
func (m *MemoryStore) UseOnce(_ context.Context, key string, ttl time.Duration) (bool, error) {
	const op = "mark used"
	if key == "" || len(key) > maxOnceKey {
		return false, fmt.Errorf("%s: key must be 1-%d bytes", op, maxOnceKey)
	}
	name := string(m.ks) + onceName(m.ring, key)
	now := m.now()
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	if _, err := m.mem.live(name, now); err == nil {
		return false, nil
	} else if m.mem.closed {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	m.mem.entries[name] = &memEntry{expires: now.Add(max(ttl, time.Millisecond))}
	return true, nil
}

// sweepIndexesLocked drops index entries past their session's absolute
// expiry or whose session is gone, examining up to limit indexes. The
// caller holds mu.
func (d *memData) sweepIndexesLocked(now time.Time, limit int) {
	seen := 0
	for idx, refs := range d.index {
		if seen == limit {
			return
		}
		seen++
		for ref, exp := range refs {
			if _, ok := d.entries[idx.ks.session(string(ref))]; !ok || !now.Before(exp) {
				delete(refs, ref)
			}
		}
		if len(refs) == 0 {
			delete(d.index, idx)
		}
	}
}
