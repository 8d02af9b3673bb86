#!/usr/bin/env bash
# Copies the third-party protos our API imports into .build/protodeps (git
# ignored) from the Go module cache, so `buf` needs no registry: the
# google.api HTTP annotations from grpc-gateway v1's vendored googleapis and
# the OpenAPI options from grpc-gateway/v2 (the version pinned in go.mod).
set -euo pipefail
cd "$(dirname "$0")/.."

out=.build/protodeps
gw1=github.com/grpc-ecosystem/grpc-gateway@v1.16.0
gw2=github.com/grpc-ecosystem/grpc-gateway/v2@$(go list -m -f '{{.Version}}' github.com/grpc-ecosystem/grpc-gateway/v2)

dir_of() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
gw1_dir=$(dir_of "$gw1")
gw2_dir=$(dir_of "$gw2")

rm -rf "$out"
mkdir -p "$out/google/api" "$out/protoc-gen-openapiv2/options"
for f in annotations.proto http.proto httpbody.proto; do
  cp "$gw1_dir/third_party/googleapis/google/api/$f" "$out/google/api/$f"
done
for f in annotations.proto openapiv2.proto; do
  cp "$gw2_dir/protoc-gen-openapiv2/options/$f" "$out/protoc-gen-openapiv2/options/$f"
done
chmod -R u+w "$out"
