# The auditlog and auditctl binaries in a small non-root image, used by
# docker-compose.yml (migrate, ingest, serve). No Docker engine runs on the
# development machines of this project: scripts/compose-check.sh validates
# the compose file, nobody has built this image here; build it with
#   docker build -t auditlog .
#
# Build stage: static binaries (no cgo), so the runtime image needs no libc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/auditlog ./cmd/auditctl

# Runtime: distroless static (CA certificates, tzdata, /etc/passwd with the
# nonroot user, no shell). The event schemas are embedded in the binary.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/auditlog /out/auditctl /usr/local/bin/
USER nonroot:nonroot
# 8080 REST + /healthz + /readyz + /metrics + /openapi.json (serve),
# 9090 gRPC (serve), 9100 /metrics (ingest).
EXPOSE 8080 9090 9100
ENTRYPOINT ["/usr/local/bin/auditlog"]
CMD ["--help"]
