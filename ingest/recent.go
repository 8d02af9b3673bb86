package ingest

import "github.com/google/uuid"

// recentIDs remembers the content hash of the last n events stored, so that
// redeliveries shortly after a restart or a retry are dropped without asking
// ClickHouse. Eviction is first in, first out: a redelivery comes soon after
// the original or not at all, so recency of storing is what matters. Only
// the goroutine storing batches uses it (see batcher).
type recentIDs struct {
	hashes map[uuid.UUID]uint64
	ring   []uuid.UUID
	next   int
	full   bool
}

func newRecentIDs(n int) *recentIDs {
	return &recentIDs{hashes: make(map[uuid.UUID]uint64, n), ring: make([]uuid.UUID, n)}
}

// get returns the hash stored for id.
func (r *recentIDs) get(id uuid.UUID) (uint64, bool) {
	h, ok := r.hashes[id]
	return h, ok
}

// add remembers id, forgetting the oldest id when the window is full.
func (r *recentIDs) add(id uuid.UUID, hash uint64) {
	if len(r.ring) == 0 {
		return
	}
	if _, ok := r.hashes[id]; ok {
		return // first wins: the stored content is what the window says
	}
	if r.full {
		delete(r.hashes, r.ring[r.next])
	}
	r.ring[r.next] = id
	r.hashes[id] = hash
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
}

func (r *recentIDs) len() int { return len(r.hashes) }
