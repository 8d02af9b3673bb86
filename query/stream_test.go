package query_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/auditlog/auditlog/internal/event"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
)

// streamAll runs a non-following stream to its end.
func (f *fixture) streamAll(t *testing.T, ctx context.Context, req *auditv1.StreamEventsRequest) []*auditv1.StreamEventsResponse {
	t.Helper()
	s, err := f.client.StreamEvents(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var out []*auditv1.StreamEventsResponse
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// streamUntil runs non-following streams, each resuming from the last
// cursor, as a polling SIEM would, until n events arrived or 30s passed: a
// stream ends at the visibility watermark, which inserts running elsewhere
// on the server may hold back for a while.
func (f *fixture) streamUntil(t *testing.T, ctx context.Context, req *auditv1.StreamEventsRequest, n int) []*auditv1.StreamEventsResponse {
	t.Helper()
	var all []*auditv1.StreamEventsResponse
	deadline := time.Now().Add(30 * time.Second)
	for len(all) < n && time.Now().Before(deadline) {
		r := proto.Clone(req).(*auditv1.StreamEventsRequest)
		if len(all) > 0 {
			r.Cursor = all[len(all)-1].GetCursor()
		}
		all = append(all, f.streamAll(t, ctx, r)...)
		if len(all) < n {
			time.Sleep(200 * time.Millisecond)
		}
	}
	return all
}

func streamIDs(msgs []*auditv1.StreamEventsResponse) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.GetEvent().GetId())
	}
	return out
}

func TestStreamDeliversLateArrivalsOnceAndCopiesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	now := time.Now().UTC()
	var first []*event.Event
	for i := 0; i < 20; i++ {
		first = append(first, makeEvent(t, "org-a", "workflow.job.start", now.Add(-time.Duration(i)*time.Minute)))
	}
	f.insert(t, first...)
	ctx := context.Background()
	got := f.streamUntil(t, ctx, &auditv1.StreamEventsRequest{}, len(first))
	sameSet(t, "first stream", streamIDs(got), eventIDs(first))
	cursor := got[len(got)-1].GetCursor()

	// Late arrivals: occurred years before everything streamed so far.
	var late []*event.Event
	for i := 0; i < 10; i++ {
		late = append(late, makeEvent(t, "org-a", "user.logged_in", time.Date(2020, 1, 1, 0, 0, i, 7, time.UTC)))
	}
	f.insert(t, late...)
	// Copies of events already streamed, ingested later, and one event
	// stored twice in one block.
	f.insert(t, first[:5]...)
	twice := makeEvent(t, "org-a", "user.logged_out", now)
	f.insert(t, twice, twice)
	f.insert(t, twice)

	// Once twice has arrived, everything inserted before it has been read
	// (or skipped): the watermark is past its second.
	after := f.streamUntil(t, ctx, &auditv1.StreamEventsRequest{Cursor: cursor}, len(late)+1)
	sameSet(t, "after the cursor", streamIDs(after), append(eventIDs(late), twice.ID.String()))
	// From the start again: each id once, copies or not. (Polled like the
	// reads above: an INSERT another test runs on the server meanwhile may
	// hold the watermark back behind the late rows for a moment.)
	all := append(append(eventIDs(first), eventIDs(late)...), twice.ID.String())
	sameSet(t, "from the start", streamIDs(f.streamUntil(t, ctx, &auditv1.StreamEventsRequest{}, len(all))), all)
	// Filters and scopes apply to the stream.
	sameSet(t, "filtered", streamIDs(f.streamUntil(t, ctx, &auditv1.StreamEventsRequest{Cursor: cursor, Action: []string{"user.logged_in"}}, len(late))), eventIDs(late))
	if n := len(f.streamAll(t, withScopes(ctx, "org-b"), &auditv1.StreamEventsRequest{})); n != 0 {
		t.Errorf("a caller of org-b streamed %d events of org-a", n)
	}
	// A since without cursor starts at ingestion time, not occurred_at.
	if n := len(f.streamAll(t, ctx, &auditv1.StreamEventsRequest{Since: time.Now().UTC().Add(time.Hour).Format(time.RFC3339)})); n != 0 {
		t.Errorf("since an hour ahead streamed %d events", n)
	}
	_, err := f.client.StreamEvents(ctx, &auditv1.StreamEventsRequest{Cursor: cursor[:10]})
	if err == nil {
		s, _ := f.client.StreamEvents(ctx, &auditv1.StreamEventsRequest{Cursor: cursor[:10]})
		_, err = s.Recv()
	}
	wantInvalid(t, err, "cursor")
}

func TestStreamResumeAfterDisconnectLosesAndRepeatsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *query.Config) { c.StreamBatch = 7 }) // many polls
	var all []*event.Event
	for round := 0; round < 3; round++ { // three blocks, possibly three seconds
		for i := 0; i < 15; i++ {
			all = append(all, makeEvent(t, "org-a", "context.create", time.Now().Add(-time.Duration(i)*time.Hour)))
		}
		f.insert(t, all[len(all)-15:]...)
		time.Sleep(400 * time.Millisecond)
	}
	var got []string
	cursor := ""
	for part := 0; part < 10 && len(got) < len(all); part++ {
		// Read a few events, then drop the connection.
		ctx, cancel := context.WithCancel(context.Background())
		s, err := f.client.StreamEvents(ctx, &auditv1.StreamEventsRequest{Cursor: cursor, Follow: true})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 11; i++ {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("part %d: %v", part, err)
			}
			got = append(got, m.GetEvent().GetId())
			cursor = m.GetCursor()
			if len(got) == len(all) {
				break
			}
		}
		cancel()
	}
	sameSet(t, "resumed stream", got, eventIDs(all))
}

func TestStreamFollowDeliversNewEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	old := makeEvent(t, "org-a", "user.create", time.Now())
	f.insert(t, old)
	time.Sleep(1100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Start a second from now in ingestion time: the old event is before.
	since := time.Now().UTC().Format(time.RFC3339Nano)
	t.Cleanup(func() {
		if t.Failed() {
			rows, _ := f.ch.Conn.Query(context.Background(), "SELECT toString(id), toString(ingested_at) FROM events_by_ingest ORDER BY ingested_at")
			for rows.Next() {
				var id, at string
				rows.Scan(&id, &at)
				t.Logf("stored %s ingested_at %s (since %s, old %s)", id, at, since, old.ID)
			}
		}
	})
	s, err := f.client.StreamEvents(ctx, &auditv1.StreamEventsRequest{Follow: true, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	var fresh []*event.Event
	for i := 0; i < 3; i++ {
		fresh = append(fresh, makeEvent(t, "org-a", "user.create", time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)))
	}
	go func() {
		for _, e := range fresh {
			time.Sleep(300 * time.Millisecond)
			f.insert(t, e)
		}
	}()
	var got []string
	for len(got) < 3 {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		got = append(got, m.GetEvent().GetId())
	}
	sameSet(t, "followed", got, eventIDs(fresh))
}
