// Package openapi embeds the OpenAPI (Swagger 2.0) document that
// protoc-gen-openapiv2 generates from proto/audit/v1, so the query service
// can serve it at /openapi.json without reading files at run time.
package openapi

import _ "embed"

// JSON is the generated OpenAPI document of the REST API.
//
//go:embed auditlog.swagger.json
var JSON []byte
