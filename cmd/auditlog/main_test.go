package main

import (
	"testing"

	"github.com/auditlog/auditlog/internal/testharness"
)

// TestMain is shared by every test of auditlog: the harness stops the servers
// it started for them.
func TestMain(m *testing.M) { testharness.Main(m) }
