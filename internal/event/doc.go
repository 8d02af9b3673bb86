// Package event is the canonical form of an audit event and the one place
// that knows its wire contract: decoding and validating the JSON envelope
// (and its protobuf twin), the canonical JSON rendering used by REST and
// NDJSON, and the conversion to the API's protobuf message.
//
// The nested objects (actor, target, scope, payload, request) are kept as the
// compact JSON text that was sent, never re-encoded through float64 or Go
// maps, so integers beyond 2^53, unicode and unknown keys come out of the
// service exactly as they went in (guarantee 5). occurred_at keeps all nine
// fractional digits and is always rendered in UTC with nine digits.
package event
