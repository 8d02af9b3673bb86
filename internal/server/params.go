package server

import (
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

// strictParams rejects query parameters that the route's request message
// does not have. grpc-gateway ignores them, so a typo such as `acter_id=…`
// would silently return every event; an analyst must see a 400 naming it.
func strictParams(gw *runtime.ServeMux, next http.Handler) http.Handler {
	routes := map[string]map[string]bool{
		"/v1/events":        fieldNames(&auditv1.ListEventsRequest{}),
		"/v1/events:stream": fieldNames(&auditv1.StreamEventsRequest{}),
		"/v1/schemas":       fieldNames(&auditv1.ListSchemasRequest{}),
	}
	m := newRESTMarshaler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allowed, ok := routes[r.URL.Path]
		if !ok && strings.HasPrefix(r.URL.Path, "/v1/events/") {
			allowed, ok = map[string]bool{}, true // GetEvent takes only the path
		}
		if ok {
			for k := range r.URL.Query() {
				if !allowed[k] {
					runtime.HTTPError(r.Context(), gw, m, w, r,
						status.Errorf(codes.InvalidArgument, "%s: unknown parameter", k))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// fieldNames returns the proto and JSON names of a message's fields, the
// names grpc-gateway accepts as query parameters.
func fieldNames(m proto.Message) map[string]bool {
	names := map[string]bool{}
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		names[string(fields.Get(i).Name())] = true
		names[fields.Get(i).JSONName()] = true
	}
	return names
}
