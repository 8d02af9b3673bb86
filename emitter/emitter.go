package emitter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/schemas"
)

// FieldError is the rejection of an invalid event, naming the field at
// fault; the ingester quarantines with the same type and text.
type FieldError = event.FieldError

var (
	// ErrBufferFull is returned by an async Emit when BufferSize events are
	// already waiting and no room was freed within BufferWait.
	ErrBufferFull = errors.New("emitter: buffer full: Kafka is not keeping up, event not queued")
	// ErrClosed is returned by Emit after Close.
	ErrClosed = errors.New("emitter: closed")
)

// ContentType is the content-type header of every message.
const ContentType = "application/json"

// Failure is an event that Kafka did not accept after every retry (async
// mode).
type Failure struct {
	// ID is the event's id, also the message key.
	ID string
	// Event is the event as it was to be sent, JSON.
	Event []byte
	// Err says why the last attempt failed.
	Err error
}

// Event is an audit event to emit, the convenient form of the JSON wire
// format. ID and OccurredAt are filled in by Emit when empty.
type Event struct {
	// ID is a UUID; empty means a new UUIDv7.
	ID string
	// Version is the version of the payload schema; 0 means 1.
	Version uint32
	// Action is e.g. "workflow.job.start".
	Action string
	// Actor is who did it; Target is what was acted on.
	Actor  Entity
	Target Entity
	// Scope is the owning account; nil for none.
	Scope *Entity
	// Payload is anything encoding/json renders as an object (a struct, a
	// map, a json.RawMessage); nil means {}.
	Payload any
	// Metadata holds free-form string pairs.
	Metadata map[string]string
	// OccurredAt is when it happened; zero means now.
	OccurredAt time.Time
	// Success says whether the action succeeded.
	Success bool
	// Request is the external request that caused the event; nil for none.
	Request *Request
}

// Entity is an actor, target or scope.
type Entity struct {
	ID   string
	Type string
	// Name is optional.
	Name string
	// Attributes are further members of the object, e.g. "email".
	Attributes map[string]any
}

// Request identifies the external request behind an event.
type Request struct {
	ID string
	// Attributes are further members of the object, e.g. "ip_address".
	Attributes map[string]any
}

// MarshalJSON renders the entity as one object: attributes, then id, type
// and name, which win over attributes of the same name.
func (e Entity) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Attributes)+3)
	for k, v := range e.Attributes {
		m[k] = v
	}
	m["id"], m["type"] = e.ID, e.Type
	if e.Name != "" {
		m["name"] = e.Name
	}
	return marshal(m)
}

// MarshalJSON renders the request as one object.
func (r Request) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(r.Attributes)+1)
	for k, v := range r.Attributes {
		m[k] = v
	}
	if r.ID != "" {
		m["id"] = r.ID
	}
	return marshal(m)
}

// wireEvent is Event in the member names of the wire format.
type wireEvent struct {
	ID         string            `json:"id"`
	Version    uint32            `json:"version"`
	Action     string            `json:"action"`
	Actor      Entity            `json:"actor"`
	Target     Entity            `json:"target"`
	Scope      *Entity           `json:"scope,omitempty"`
	Payload    any               `json:"payload,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	OccurredAt string            `json:"occurred_at"`
	Success    bool              `json:"success"`
	Request    *Request          `json:"request,omitempty"`
}

// marshal is json.Marshal without HTML escaping, which would change the
// bytes of strings holding <, > or &.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Emitter writes events to Kafka. It is safe for concurrent use.
type Emitter struct {
	cfg       Config
	w         *kafka.Writer
	transport *kafka.Transport
	slots     chan struct{} // async: one token per queued event
	metrics   *metrics
	closed    atomic.Bool
	once      sync.Once
}

// New returns an Emitter for cfg; zero fields of cfg take their defaults. It
// does not contact Kafka: the first Emit does.
func New(cfg Config) (*Emitter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	e := &Emitter{cfg: cfg, metrics: m}
	// A transport of its own: kafka-go's shared default caches topic
	// metadata across writers, so a topic created after another writer
	// looked would stay unknown for a while.
	e.transport = &kafka.Transport{}
	e.w = &kafka.Writer{
		Transport: e.transport,
		Addr:      kafka.TCP(cfg.Brokers...),
		Topic:     cfg.Topic,
		// Key = event id: every redelivery of one event lands in one
		// partition, next to its first copy.
		Balancer:        &kafka.Hash{},
		RequiredAcks:    kafka.RequireAll,
		MaxAttempts:     cfg.MaxAttempts,
		WriteBackoffMin: cfg.BackoffMin,
		WriteBackoffMax: cfg.BackoffMax,
		BatchSize:       1000,
		BatchBytes:      cfg.BatchBytes,
		BatchTimeout:    cfg.BatchTimeout,
		WriteTimeout:    cfg.WriteTimeout,
		Async:           cfg.Async,
		ErrorLogger: kafka.LoggerFunc(func(format string, args ...any) {
			cfg.Logger.Warn("kafka producer: "+fmt.Sprintf(format, args...), "topic", cfg.Topic)
		}),
	}
	if cfg.Async {
		e.slots = make(chan struct{}, cfg.BufferSize)
		e.w.Completion = e.completed
	}
	return e, nil
}

// Emit validates ev and sends it. It sets ev.ID and ev.OccurredAt when they
// are empty, so the caller learns them. An invalid event returns a
// *FieldError and sends nothing. In sync mode a nil error means Kafka
// acknowledged the event; if ctx ends first the event may still be sent.
func (e *Emitter) Emit(ctx context.Context, ev *Event) error {
	if ev.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("emitter: new id: %w", err)
		}
		ev.ID = id.String()
	}
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = time.Now().UTC()
	}
	version := ev.Version
	if version == 0 {
		version = 1
	}
	data, err := marshal(wireEvent{
		ID: ev.ID, Version: version, Action: ev.Action, Actor: ev.Actor, Target: ev.Target,
		Scope: ev.Scope, Payload: ev.Payload, Metadata: ev.Metadata,
		OccurredAt: ev.OccurredAt.UTC().Format(event.TimeLayout),
		Success:    ev.Success, Request: ev.Request,
	})
	if err != nil {
		e.metrics.rejected.Inc()
		return &FieldError{Field: "payload", Problem: "cannot be encoded as JSON: " + err.Error()}
	}
	_, err = e.EmitJSON(ctx, data)
	return err
}

// EmitJSON validates one event in the JSON wire format and sends it, adding
// an id (UUIDv7) and an occurred_at (now) when they are absent or null. It
// returns the event's id. An invalid event returns a *FieldError and sends
// nothing.
func (e *Emitter) EmitJSON(ctx context.Context, data []byte) (string, error) {
	if e.closed.Load() {
		return "", ErrClosed
	}
	ev, value, err := e.Prepare(data)
	if err != nil {
		e.metrics.rejected.Inc()
		return "", err
	}
	id := ev.ID.String()
	msg := kafka.Message{
		Key:     []byte(id),
		Value:   value,
		Headers: []kafka.Header{{Key: "content-type", Value: []byte(ContentType)}},
	}
	if !e.cfg.Async {
		if err := e.w.WriteMessages(ctx, msg); err != nil {
			e.metrics.failed.Inc()
			return id, fmt.Errorf("emitter: send event %s: %w", id, writeErr(err))
		}
		e.metrics.sent.Inc()
		return id, nil
	}
	if err := e.acquire(ctx); err != nil {
		e.metrics.bufferFull.Inc()
		return id, err
	}
	if err := e.w.WriteMessages(ctx, msg); err != nil {
		// Not queued: Completion will never run for it.
		<-e.slots
		e.metrics.failed.Inc()
		return id, fmt.Errorf("emitter: queue event %s: %w", id, writeErr(err))
	}
	e.metrics.queued.Set(float64(len(e.slots)))
	return id, nil
}

func writeErr(err error) error {
	if errors.Is(err, io.ErrClosedPipe) {
		return ErrClosed
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == 1 && werrs[0] != nil {
		return werrs[0]
	}
	return err
}

// acquire takes a queue slot, waiting at most BufferWait.
func (e *Emitter) acquire(ctx context.Context) error {
	select {
	case e.slots <- struct{}{}:
		return nil
	default:
	}
	if e.cfg.BufferWait == 0 {
		return ErrBufferFull
	}
	t := time.NewTimer(e.cfg.BufferWait)
	defer t.Stop()
	select {
	case e.slots <- struct{}{}:
		return nil
	case <-t.C:
		return ErrBufferFull
	case <-ctx.Done():
		return ctx.Err()
	}
}

// completed is the writer's Completion callback in async mode: it frees the
// slots of a finished batch and reports the events of a failed one.
func (e *Emitter) completed(msgs []kafka.Message, err error) {
	for range msgs {
		<-e.slots
	}
	e.metrics.queued.Set(float64(len(e.slots)))
	if err == nil {
		e.metrics.sent.Add(float64(len(msgs)))
		return
	}
	e.metrics.failed.Add(float64(len(msgs)))
	for _, m := range msgs {
		e.cfg.Logger.Error("audit event not sent after every retry", "id", string(m.Key), "topic", e.cfg.Topic, "err", err)
		if e.cfg.OnFailure != nil {
			// The writer reuses nothing after Completion, but the caller
			// may keep the bytes: hand over copies.
			e.cfg.OnFailure(Failure{ID: string(m.Key), Event: slices.Clone(m.Value), Err: err})
		}
	}
}

// Prepare is what Emit does before sending: it fills in a missing id and
// occurred_at, validates the envelope and the payload exactly as the
// ingester does, and returns the event and its canonical JSON (the bytes
// that would be sent). Tools use it to check events without sending them.
func (e *Emitter) Prepare(data []byte) (*event.Event, []byte, error) {
	data, err := withDefaults(data)
	if err != nil {
		return nil, nil, err
	}
	ev, err := event.ParseJSON(data)
	if err != nil {
		return nil, nil, err
	}
	if err := e.cfg.Schemas.Validate(ev.Action, ev.Version, ev.Payload); err != nil {
		if !errors.Is(err, schemas.ErrUnknownSchema) {
			return nil, nil, err
		}
		if e.cfg.RequireSchema {
			return nil, nil, unknownSchemaError(e.cfg.Schemas, ev)
		}
	}
	value := ev.AppendJSON(make([]byte, 0, len(data)+64))
	// Key, value and the header must fit in one produce request.
	if size := int64(len(value) + 36 + len("content-type") + len(ContentType) + 64); size > e.cfg.BatchBytes {
		return nil, nil, &FieldError{Problem: fmt.Sprintf("event is %d bytes, more than fit in one Kafka message (BatchBytes %d)", len(value), e.cfg.BatchBytes)}
	}
	return ev, value, nil
}

// withDefaults adds an id and an occurred_at to a JSON object that lacks
// them. Anything that is not a JSON object is returned as is, for ParseJSON
// to reject with the right reason.
func withDefaults(data []byte) ([]byte, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil || members == nil {
		return data, nil
	}
	changed := false
	if missing(members["id"]) {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("emitter: new id: %w", err)
		}
		members["id"] = json.RawMessage(strconv.Quote(id.String()))
		changed = true
	}
	if missing(members["occurred_at"]) {
		members["occurred_at"] = json.RawMessage(`"` + time.Now().UTC().Format(event.TimeLayout) + `"`)
		changed = true
	}
	if !changed {
		return data, nil
	}
	return marshal(members)
}

func missing(raw json.RawMessage) bool {
	return raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// unknownSchemaError names the version and lists the known ones; it matches
// both *FieldError and schemas.ErrUnknownSchema.
func unknownSchemaError(r *schemas.Registry, ev *event.Event) error {
	var known []string
	for _, s := range r.List() {
		if s.Action == ev.Action {
			known = append(known, strconv.FormatUint(uint64(s.Version), 10))
		}
	}
	problem := fmt.Sprintf("no schema for %s version %d", ev.Action, ev.Version)
	if len(known) == 0 {
		problem = fmt.Sprintf("no schema for action %s (is the action name right?)", ev.Action)
	} else {
		problem += " (known versions: " + fmt.Sprint(known) + ")"
	}
	return &schemaError{fe: &FieldError{Field: "version", Problem: problem}}
}

type schemaError struct{ fe *FieldError }

func (e *schemaError) Error() string   { return e.fe.Error() }
func (e *schemaError) Unwrap() []error { return []error{e.fe, schemas.ErrUnknownSchema} }

// Close sends every queued event (async mode), then releases the
// connections. Emit fails with ErrClosed afterwards.
func (e *Emitter) Close() error {
	var err error
	e.once.Do(func() {
		e.closed.Store(true)
		err = e.w.Close()
		e.transport.CloseIdleConnections()
	})
	return err
}

// metrics are the emitter's counters; with no registerer they count into
// the void.
type metrics struct {
	sent, rejected, failed, bufferFull prometheus.Counter
	queued                             prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auditlog_emitter_events_total",
		Help: "Audit events by outcome: sent (acknowledged by Kafka), rejected (invalid, never sent), failed (Kafka refused after every retry), buffer_full (async queue full, not queued).",
	}, []string{"outcome"})
	queued := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "auditlog_emitter_queued_events",
		Help: "Events queued in async mode and not yet acknowledged.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{events, queued} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("emitter: metrics: %w", err)
			}
		}
	}
	return &metrics{
		sent:       events.WithLabelValues("sent"),
		rejected:   events.WithLabelValues("rejected"),
		failed:     events.WithLabelValues("failed"),
		bufferFull: events.WithLabelValues("buffer_full"),
		queued:     queued,
	}, nil
}
