// Package auth authenticates API callers with bearer tokens and carries who
// they are, and which scopes they may see, through the request context.
//
// Tokens live in a JSON file (DESIGN.md): {"tokens": [{"name": "siem",
// "sha256": "<hex of the token>", "scopes": ["org-1"]}]}; "scopes": ["*"]
// means every scope. Only hashes are stored, so the file is not a secret in
// itself; presented tokens are hashed and compared in constant time against
// every entry. The file is reloaded on SIGHUP (Reload), so revoking a token
// needs no restart; a file that fails to load keeps the previous tokens and
// logs why.
//
// Authentication happens in gRPC interceptors (which the REST gateway goes
// through too) and in an HTTP middleware for the raw export download.
// Authorization is NOT done here: the query and export layers read the
// Principal from the context and AND its scopes into every query, and treat a
// context without a Principal as a caller who may see nothing, so a new RPC
// that forgets the interceptor fails closed.
package auth
