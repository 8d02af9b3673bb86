package schemas

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// referenceDecode is what Validate did before payloadDecoder: encoding/json
// with UseNumber.
func referenceDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	err := dec.Decode(&doc)
	return doc, err
}

// agreeOnPayload fails when the payload decoder accepts data and decodes it
// to anything but what encoding/json does. It decodes with a decoder from
// the pool, as Validate does, so the maps and arrays of earlier payloads are
// reused.
func agreeOnPayload(t *testing.T, data []byte) {
	t.Helper()
	d := newPayloadDecoder()
	defer d.release()
	got, ok := d.decode(data)
	want, err := referenceDecode(data)
	if !ok {
		return // Validate falls back to encoding/json
	}
	if err != nil {
		t.Fatalf("the decoder accepted %q, which encoding/json rejects: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decode(%q) = %#v, encoding/json gives %#v", data, got, want)
	}
}

func TestDecodePayloadMatchesEncodingJSON(t *testing.T) {
	inputs := []string{
		`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e-300`, `18446744073709551617`, `1.0e400`,
		`{"a":1,"a":"two"}`, ` { "a" : [ 1 , { } , [ ] , null , "x" ] } `,
		`{"s":"日本語 \u2028 \\ \" \/ \b\f\n\r\t \ud83d\ude00 \ud800 \uDC00x"}`,
		"{\"s\":\"\xff\xfe\"}", "{\"s\":\"a\x01\"}", `{"s":"\x"}`, `{"s":"\u12G4"}`, `{"s":"\`,
		`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":+1}`, `{"a":tru}`, `{"a":nul}`,
		`{"a":1,}`, `[1,]`, `{"a" 1}`, `{a:1}`, `{} {}`, `{} x`, `{`, ``, ` `,
		strings.Repeat("[", 600) + strings.Repeat("]", 600),
	}
	for _, s := range Samples() {
		inputs = append(inputs, string(s.Payload))
		if _, ok := new(payloadDecoder).decode(s.Payload); !ok {
			t.Errorf("the decoder declined the sample payload of %s v%d, so validation pays for encoding/json: %s", s.Action, s.Version, s.Payload)
		}
	}
	for _, in := range inputs {
		agreeOnPayload(t, []byte(in))
	}
}

func FuzzDecodePayload(f *testing.F) {
	for _, s := range Samples() {
		f.Add([]byte(s.Payload))
	}
	f.Add([]byte(`{"s":"\u00e9\n","n":[1,-2.5E+3,null,true]}`))
	f.Fuzz(func(t *testing.T, data []byte) { agreeOnPayload(t, data) })
}
