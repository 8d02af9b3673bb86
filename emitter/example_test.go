package emitter_test

import (
	"context"
	"errors"
	"log"

	"github.com/auditlog/auditlog/emitter"
)

// A component emits one event per security-relevant action. Emit assigns the
// id (UUIDv7) and occurred_at, validates the event and returns once Kafka
// acknowledged it.
func Example() {
	e, err := emitter.New(emitter.Config{Brokers: []string{"kafka:9092"}, Topic: "audit.events"})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	err = e.Emit(context.Background(), &emitter.Event{
		Action: "workflow.job.start",
		Actor:  emitter.Entity{ID: "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b", Type: "user", Name: "alice"},
		Target: emitter.Entity{ID: "3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c", Type: "job", Name: "build"},
		Scope:  &emitter.Entity{ID: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", Type: "organization", Name: "acme"},
		Payload: map[string]any{
			"job_id":      "3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c",
			"job_name":    "build",
			"job_number":  18234,
			"workflow_id": "7c2e9d14-3b5a-4f8e-a1c6-92d0e4b7f3a5",
			"branch":      "main",
		},
		Success: true,
	})
	var invalid *emitter.FieldError
	switch {
	case errors.As(err, &invalid):
		log.Printf("bug in the event: %v", invalid) // e.g. payload.job_number: expected integer, got string
	case err != nil:
		log.Printf("audit event not sent: %v", err)
	}
}
