package ingest

import (
	"testing"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
)

func TestRecentIDsForgetsTheOldest(t *testing.T) {
	r := newRecentIDs(3)
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New()}
	for i, id := range ids {
		r.add(id, uint64(i))
	}
	if _, ok := r.get(ids[0]); ok {
		t.Errorf("the oldest id is still remembered in a full window of 3")
	}
	for i, id := range ids[1:] {
		if h, ok := r.get(id); !ok || h != uint64(i+1) {
			t.Errorf("id %d: get = %d, %v; want %d, true", i+1, h, ok, i+1)
		}
	}
	// Adding a known id again keeps the first hash: first wins.
	r.add(ids[3], 99)
	if h, _ := r.get(ids[3]); h != 3 {
		t.Errorf("re-adding an id replaced its hash with %d", h)
	}
	if r.len() != 3 {
		t.Errorf("window holds %d ids, want 3", r.len())
	}
	// A window of size 0 remembers nothing.
	z := newRecentIDs(0)
	z.add(ids[0], 1)
	if _, ok := z.get(ids[0]); ok {
		t.Errorf("a window of size 0 remembered an id")
	}
}

func TestOffsetRanges(t *testing.T) {
	var recs []*record
	for _, po := range [][2]int64{{2, 7}, {0, 10}, {0, 12}, {2, 5}, {0, 11}} {
		recs = append(recs, &record{msg: kafka.Message{Partition: int(po[0]), Offset: po[1]}})
	}
	if got, want := offsetRanges(recs), "0:10-12,2:5-7"; got != want {
		t.Errorf("offsetRanges = %q, want %q", got, want)
	}
}
