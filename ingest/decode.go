package ingest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/auditlog/auditlog/internal/event"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/schemas"
)

// Content types of the wire contract (the Kafka header "content-type").
const (
	contentTypeJSON  = "application/json"
	contentTypeProto = "application/x-protobuf"
)

// Reason classes, the values of the quarantined_total "reason" label.
const (
	classOversize      = "oversize"
	classContentType   = "content_type"
	classInvalid       = "invalid"
	classSchema        = "schema"
	classUnknownSchema = "unknown_schema"
	classConflict      = "conflict"
)

// record is one Kafka message on its way through the pipeline: decoded and
// validated by its partition's fetcher, then batched.
type record struct {
	// epoch identifies the consumer group generation the message was read
	// in; gen commits its offset.
	epoch int64
	gen   committer
	msg   kafka.Message

	// ev is the decoded event, nil when the message is rejected.
	ev *event.Event
	// hash is ev's content hash.
	hash uint64
	// validated is false when no schema was known for (action, version).
	validated bool
	// class and reason say why the message is rejected; empty when it is not.
	class, reason string
	// queued is what the record holds of Config.QueueBytes while queued.
	queued int64
}

// committer commits offsets for one consumer group generation;
// *kafka.Generation satisfies it.
type committer interface {
	CommitOffsets(offsets map[string]map[int]int64) error
}

// reject sends the record to quarantine; ev stays when it decoded, for the
// event id of the quarantine row.
func (r *record) reject(class, reason string) {
	r.class, r.reason = class, reason
}

// size is what the record counts against Config.BatchBytes.
func (r *record) size() int { return len(r.msg.Value) + len(r.msg.Key) }

// decode decodes and validates one message into r. A rejection sets
// r.class and r.reason; the reason names the field at fault.
func (in *Ingester) decode(r *record) {
	m := r.msg
	if len(m.Value) > in.cfg.MaxMessageBytes {
		r.reject(classOversize, fmt.Sprintf("message: %d bytes, more than the %d allowed (--max-message-bytes)", len(m.Value), in.cfg.MaxMessageBytes))
		return
	}
	var ev *event.Event
	var err error
	switch ct := contentType(m); ct {
	case "", contentTypeJSON:
		ev, err = event.ParseJSONShared(m.Value)
	case contentTypeProto:
		var p auditv1.AuditEvent
		if uerr := proto.Unmarshal(m.Value, &p); uerr != nil {
			r.reject(classInvalid, fmt.Sprintf("invalid event: message: not a protobuf audit.v1.AuditEvent: %v", uerr))
			return
		}
		ev, err = event.FromProto(&p)
	default:
		r.reject(classContentType, fmt.Sprintf("content-type: %q is not %s or %s", truncate(ct, 64), contentTypeJSON, contentTypeProto))
		return
	}
	if err != nil {
		r.reject(classInvalid, "invalid event: "+err.Error())
		return
	}
	r.ev = ev
	r.hash = ev.ContentHash()
	r.validated = true
	if err := in.schemas.Validate(ev.Action, ev.Version, ev.PayloadJSON()); err != nil {
		if errors.Is(err, schemas.ErrUnknownSchema) {
			if in.cfg.UnknownSchema == UnknownSchemaQuarantine {
				r.reject(classUnknownSchema, fmt.Sprintf("unknown schema: action %q version %d has no schema (--unknown-schema=quarantine)", ev.Action, ev.Version))
				return
			}
			r.validated = false
			return
		}
		r.reject(classSchema, fmt.Sprintf("schema %s v%d: %v", ev.Action, ev.Version, err))
	}
}

// rejected reports whether the record goes to quarantine.
func (r *record) rejected() bool { return r.reason != "" }

// eventID is the id for the quarantine row: the event's when it decoded.
func (r *record) eventID() string {
	if r.ev == nil {
		return ""
	}
	return r.ev.ID.String()
}

func contentType(m kafka.Message) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Key, "content-type") {
			// Parameters such as "; charset=utf-8" do not change the format.
			ct, _, _ := strings.Cut(string(h.Value), ";")
			return strings.ToLower(strings.TrimSpace(ct))
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
