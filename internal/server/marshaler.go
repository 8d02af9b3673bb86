package server

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/auditlog/auditlog/internal/event"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

// restMarshaler renders REST responses. protojson cannot render an event as
// the contract says (payload is JSON text in a string field, entities carry
// extra keys as `attributes` of JSON text), so every message holding events
// is written by hand around event.AppendJSON, the same rendering NDJSON
// export uses: nested objects as sent (big integers intact), `success`
// always present, occurred_at in UTC with nine digits. Everything else
// (errors, schemas) is protojson with proto field names and unpopulated
// fields emitted.
type restMarshaler struct {
	runtime.JSONPb
}

func newRESTMarshaler() *restMarshaler {
	return &restMarshaler{JSONPb: runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
	}}
}

// Marshal renders v.
func (m *restMarshaler) Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case *auditv1.AuditEvent:
		return appendEvent(nil, v)
	case *auditv1.ListEventsResponse:
		buf := []byte(`{"events":[`)
		for i, e := range v.GetEvents() {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendEvent(buf, e); err != nil {
				return nil, err
			}
		}
		buf = append(buf, `],"next_page_token":`...)
		return append(appendString(buf, v.GetNextPageToken()), '}'), nil
	case *auditv1.GetEventResponse:
		buf, err := appendEvent([]byte(`{"event":`), v.GetEvent())
		if err != nil {
			return nil, err
		}
		return append(buf, '}'), nil
	case *auditv1.StreamEventsResponse:
		buf, err := appendEvent([]byte(`{"event":`), v.GetEvent())
		if err != nil {
			return nil, err
		}
		buf = append(buf, `,"cursor":`...)
		return append(appendString(buf, v.GetCursor()), '}'), nil
	case map[string]any:
		// The gateway wraps each message of a server stream as
		// {"result": msg}; a stream line is {"event": …, "cursor": …}.
		if r, ok := v["result"].(*auditv1.StreamEventsResponse); ok && len(v) == 1 {
			return m.Marshal(r)
		}
	}
	return m.JSONPb.Marshal(v)
}

// NewEncoder writes what Marshal renders.
func (m *restMarshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := m.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
}

func appendEvent(buf []byte, p *auditv1.AuditEvent) ([]byte, error) {
	if p == nil {
		return append(buf, "null"...), nil
	}
	e, err := event.FromProtoUnchecked(p)
	if err != nil {
		return nil, fmt.Errorf("rendering event %s: %w", p.GetId(), err)
	}
	return e.AppendJSON(buf), nil
}

func appendString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(buf, b...)
}
