// Package emitter is the Go client product components use to write audit
// events to Kafka in the auditlog wire format.
//
// An Emitter fills in what a caller may leave out (a UUIDv7 id and an
// occurred_at of now, in UTC with nanoseconds), validates the event with
// exactly the code the ingester runs (the envelope rules of internal/event
// and the payload schemas of package schemas), and produces it keyed by its
// id, so every redelivery of one event lands in one partition, with header
// content-type: application/json and acknowledgement from every in-sync
// replica. An invalid event is rejected before anything is sent, with a
// *FieldError naming the field at fault, e.g.
// "payload.job_number: expected integer, got string".
//
// By default Emit returns once Kafka has acknowledged the event (retrying
// with backoff). With Config.Async it returns once the event is validated
// and queued; the queue is bounded (Config.BufferSize) and Emit fails with
// ErrBufferFull rather than block for longer than Config.BufferWait. Events
// Kafka still refuses after every retry are handed to Config.OnFailure, so a
// caller can keep them: nothing is dropped silently. Close flushes the queue.
//
// The package lives in the auditlog module so that it can share the
// validation code under internal/ (a package in another module could not
// import it); programs in other modules import this package and get the
// same rules. Components in other languages follow the JSON-on-Kafka
// contract of DESIGN.md directly.
package emitter
