package auditv1

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The filter fields (numbers 1 to 15) must be the same in every request that
// takes filters: one parser reads them all, and a filter added to one request
// but not the others is how audit exports drift from audit views.
func TestFilterFieldsIdenticalAcrossRequests(t *testing.T) {
	reference := (&ListEventsRequest{}).ProtoReflect().Descriptor()
	for _, m := range []protoreflect.ProtoMessage{&StreamEventsRequest{}, &ExportEventsRequest{}} {
		desc := m.ProtoReflect().Descriptor()
		for num := protoreflect.FieldNumber(1); num <= 15; num++ {
			want := reference.Fields().ByNumber(num)
			got := desc.Fields().ByNumber(num)
			if want == nil {
				t.Fatalf("ListEventsRequest has no field %d", num)
			}
			if got == nil {
				t.Errorf("%s lacks filter field %d (%s)", desc.Name(), num, want.Name())
				continue
			}
			if got.Name() != want.Name() || got.Kind() != want.Kind() || got.Cardinality() != want.Cardinality() || got.HasPresence() != want.HasPresence() {
				t.Errorf("%s field %d is %s %s %s, want %s %s %s as in ListEventsRequest",
					desc.Name(), num, got.Cardinality(), got.Kind(), got.Name(), want.Cardinality(), want.Kind(), want.Name())
			}
		}
		for i := 0; i < desc.Fields().Len(); i++ {
			f := desc.Fields().Get(i)
			if f.Number() > 15 && f.Number() < 20 {
				t.Errorf("%s field %s uses number %d, reserved for future filters", desc.Name(), f.Name(), f.Number())
			}
		}
	}
}
