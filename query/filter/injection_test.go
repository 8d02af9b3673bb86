package filter_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query/filter"
)

// Hostile strings in every filter find nothing (no stored event has them)
// and never break or change the query: user text only travels as bound
// parameters.
func TestSQLInjectionStringsMatchNothing(t *testing.T) {
	t.Parallel()
	ch := migrated(t)
	events := genEvents(t, rand.New(rand.NewPCG(7, 7)), 50)
	insert(t, ch, events)
	hostile := []string{
		`' OR 1=1 --`, `' OR '1'='1`, `\' OR 1=1 --`, `\\' OR 1=1 --`, `'); DROP TABLE events; --`,
		`" OR ""="`, "x' UNION SELECT * FROM system.tables --", "?", "? OR 1=1", "`id`", "x\x00' OR 1", "%' OR ''='", `\`, "1) OR (1=1",
	}
	for _, h := range hostile {
		reqs := []*auditv1.ListEventsRequest{
			{ScopeId: []string{h}}, {Action: []string{h}}, {Action: []string{h + "*"}},
			{ActorId: []string{h}}, {ActorType: []string{h}}, {ActorName: []string{h}},
			{TargetId: []string{h}}, {TargetType: []string{h}}, {TargetName: []string{h}},
			{RequestId: []string{h}}, {Metadata: []string{"env=" + h}}, {Metadata: []string{h + "=prod"}},
		}
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(h) + `"`
		for _, key := range []string{"scope", "scope_id", "action", "actor", "actor_id", "actor_type", "actor_name", "target",
			"target_id", "target_type", "target_name", "request", "request_id", "meta.env"} {
			reqs = append(reqs, &auditv1.ListEventsRequest{Q: key + ":" + quoted})
		}
		for _, req := range reqs {
			f, err := filter.Parse(req)
			var fe *filter.Error
			if errors.As(err, &fe) {
				continue // refused, naming the parameter: also a correct answer
			}
			if err != nil {
				t.Fatalf("Parse(%v): %v", req, err)
			}
			if ids := selectIDs(t, ch, f); len(ids) != 0 {
				t.Errorf("%v matched %d events, want none", req, len(ids))
			}
			// Scoped callers too: the scope condition must stay in force.
			f.AllowedScopes = []string{"org-a"}
			if ids := selectIDs(t, ch, f); len(ids) != 0 {
				t.Errorf("%v (scoped) matched %d events, want none", req, len(ids))
			}
		}
	}
	if n := ch.QueryUint64(t, "SELECT count() FROM events"); n != uint64(len(events)) {
		t.Fatalf("events table holds %d rows after the hostile queries, want %d", n, len(events))
	}
}
