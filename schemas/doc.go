// Package schemas holds the JSON Schemas of audit event payloads, one per
// (action, version), and the Registry that validates a payload against them.
// The ingester, the emitter and the API's ListSchemas all use one Registry,
// so an event is judged the same way everywhere.
//
// # Files
//
// A schema lives in a file named v<VERSION>/<ACTION>.json, relative to the
// root of a schema tree: v1/workflow.job.start.json is version 1 of
// workflow.job.start. VERSION is a decimal integer from 1; ACTION follows the
// envelope's rule for actions (lowercase words joined by dots). The schemas
// built into the binary are this package's v*/ directories, embedded with
// go:embed, each written in JSON Schema draft 2020-12 (the draft assumed when
// a file has no "$schema"). "format" is asserted, so "format": "uuid" rejects
// a malformed id.
//
// # Overrides
//
// Load(dir) reads a directory laid out the same way (dir/v2/user.create.json)
// on top of the embedded schemas: a file for an (action, version) that is
// built in replaces the built-in schema, any other file adds one. Files that
// do not end in .json are ignored (a README may sit beside the schemas); a
// .json file whose path is not v<VERSION>/<ACTION>.json, that is not valid
// JSON or that is not a valid schema is an error naming the file, so a typo
// in a name never silently leaves the built-in schema in force.
//
// # Validation
//
// Validate decodes the payload with json.Number, so integers beyond 2^53 are
// compared exactly against "type": "integer", "minimum" and "maximum".
// Errors are *event.FieldError naming the payload member at fault
// ("payload.job_number: expected integer, got string"), the same type the
// envelope parser returns, so the quarantine, the DLQ and the emitter show
// one kind of reason. An (action, version) without a schema gives an error
// matching ErrUnknownSchema; what to do with such an event (store it as
// unvalidated, or reject it) is the caller's choice.
//
// # Samples
//
// Every schema carries realistic payloads in its "examples" keyword; the
// tests check them against the schema, and SamplePayload and SampleEvent hand
// them to emitter tests, benchmarks and the development seed data.
package schemas
