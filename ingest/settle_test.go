package ingest

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
)

// First wins across all deliveries of an id: the stored content if there is
// one, else the batch's first delivery. Every other delivery is a duplicate
// of the winner or a conflict with it, whatever order the batch has them in.
func TestClassifyAndSettleLetTheFirstContentWin(t *testing.T) {
	stored, known, fresh := uuid.New(), uuid.New(), uuid.New()
	const a, b = 1, 2 // two contents
	deliver := func(id uuid.UUID, hash uint64) *record {
		return &record{ev: &event.Event{ID: id}, hash: hash}
	}
	cases := []struct {
		name string
		recs []*record
		// what each record becomes: "insert", a duplicate of some layer,
		// or a conflict whose reason says where.
		want []string
	}{
		{"fresh id: the first delivery wins", []*record{deliver(fresh, a), deliver(fresh, a), deliver(fresh, b)},
			[]string{"insert", "batch", "conflict: earlier in this batch"}},
		{"fresh id, second content first", []*record{deliver(fresh, b), deliver(fresh, a)},
			[]string{"insert", "conflict: earlier in this batch"}},
		{"stored id: a conflicting delivery first does not win", []*record{deliver(stored, b), deliver(stored, a), deliver(stored, b)},
			[]string{"conflict: already stored", "stored", "conflict: already stored"}},
		{"id in the window: a conflicting delivery first does not win", []*record{deliver(known, b), deliver(known, a)},
			[]string{"conflict: already stored", "recent"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := &Ingester{recent: newRecentIDs(10)}
			in.recent.add(known, a)
			candidates, later, o := in.classify(c.recs)
			s := settle(candidates, later, map[uuid.UUID]uint64{stored: a})
			inserted := map[*record]bool{}
			for _, r := range s.insert {
				inserted[r] = true
			}
			dups := map[string]int{layerBatch: s.batchDups, layerStored: s.storedDups, layerRecent: o.dups[layerRecent]}
			wantDups := map[string]int{layerBatch: 0, layerStored: 0, layerRecent: 0}
			for i, r := range c.recs {
				w := c.want[i]
				switch {
				case w == "insert":
					if !inserted[r] || r.rejected() {
						t.Errorf("delivery %d: not inserted (reason %q)", i, r.reason)
					}
				case strings.HasPrefix(w, "conflict: "):
					where := strings.TrimPrefix(w, "conflict: ")
					if r.class != classConflict || !strings.Contains(r.reason, where) {
						t.Errorf("delivery %d: class %q reason %q; want a conflict %q", i, r.class, r.reason, where)
					}
				default:
					wantDups[w]++
					if inserted[r] || r.rejected() {
						t.Errorf("delivery %d: inserted or rejected (%q); want a duplicate dropped by the %s layer", i, r.reason, w)
					}
				}
			}
			for layer, n := range wantDups {
				if dups[layer] != n {
					t.Errorf("%s layer dropped %d duplicates, want %d", layer, dups[layer], n)
				}
			}
			if n := len(s.insert); n > 1 {
				t.Errorf("%d deliveries of one id inserted", n)
			}
		})
	}
}

// A batch stored again, as shutdown stores a batch whose first store gave
// up, is decided against what is stored then, not by the marks of the
// first try.
func TestClassifyDecidesAStoredAgainBatchAfresh(t *testing.T) {
	id := uuid.New()
	const a, b = 1, 2
	first, second := &record{ev: &event.Event{ID: id}, hash: b}, &record{ev: &event.Event{ID: id}, hash: a}
	in := &Ingester{recent: newRecentIDs(10)}

	// First try: nothing stored, so the first delivery wins.
	candidates, later, _ := in.classify([]*record{first, second})
	settle(candidates, later, nil)
	if second.class != classConflict {
		t.Fatalf("first try: the second delivery is %q, want a conflict", second.class)
	}
	// Meanwhile another member stored content a.
	candidates, later, o := in.classify([]*record{first, second})
	s := settle(candidates, later, map[uuid.UUID]uint64{id: a})
	if len(o.quarantine) != 0 || first.class != classConflict || second.rejected() || s.storedDups != 1 {
		t.Errorf("second try: quarantined %d before the lookup, first %q, second %q, stored duplicates %d; want 0, a conflict, a duplicate, 1",
			len(o.quarantine), first.class, second.reason, s.storedDups)
	}
}
