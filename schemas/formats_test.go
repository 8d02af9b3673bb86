package schemas

import (
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// libraryUUID is the library's own "uuid" check, reached through a schema
// compiled without uuidFormat.
func libraryUUID(t testing.TB) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(`{"format": "uuid"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("test:///uuid.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("test:///uuid.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var uuidInputs = []string{
	"3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c",
	"3F9A8B7C-6D5E-4F3A-9B2C-1D0E9F8A7B6C",
	"00000000-0000-0000-0000-000000000000",
	"3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6",   // 35
	"3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6cc", // 37
	"3f9a8b7c6d5e-4f3a-9b2c-1d0e9f8a7b6c-",  // dash moved
	"3f9a8b7c-6d5e-4f3a-9b2c1-d0e9f8a7b6c",
	"3f9a8b7c-6d5e-4f3a-9b2g-1d0e9f8a7b6c", // g
	"{f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c}",
	"3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7bé",
	"3f9a8b7c6d5e4f3a9b2c1d0e9f8a7b6c",
	"urn:uuid:3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c",
	"------------------------------------",
	"", "wf-1", "-", "3f9a8b7c-6d5e-4f3a-9b2c-",
}

// TestUUIDFormatAgreesWithTheLibrary holds validateUUID to the answers of
// the check it replaces, on hand-picked strings and on every one-byte change
// of a valid UUID.
func TestUUIDFormatAgreesWithTheLibrary(t *testing.T) {
	lib := libraryUUID(t)
	inputs := append([]string(nil), uuidInputs...)
	valid := "3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c"
	for i := range len(valid) {
		for _, c := range []byte{'-', '0', 'a', 'F', 'g', 'G', ' ', '_', 0xff} {
			b := []byte(valid)
			b[i] = c
			inputs = append(inputs, string(b))
		}
		inputs = append(inputs, valid[:i]+valid[i+1:], valid[:i]+"-"+valid[i:])
	}
	accepted := 0
	for _, s := range inputs {
		want := lib.Validate(s) == nil
		err := validateUUID(s)
		if got := err == nil; got != want {
			t.Errorf("validateUUID(%q) accepts = %v, the library's check says %v (err %v)", s, got, want, err)
		}
		if want {
			accepted++
		}
	}
	if accepted < 3 || accepted == len(inputs) {
		t.Fatalf("%d of %d inputs accepted: the table does not test both answers", accepted, len(inputs))
	}
	if err := validateUUID(42); err != nil {
		t.Errorf("a number is not a string, the format does not apply: %v", err)
	}
}

func FuzzUUIDFormatAgreesWithTheLibrary(f *testing.F) {
	for _, s := range uuidInputs {
		f.Add(s)
	}
	lib := libraryUUID(f)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validateUUID(s) == nil, lib.Validate(s) == nil; got != want {
			t.Errorf("validateUUID(%q) accepts = %v, the library's check says %v", s, got, want)
		}
	})
}
