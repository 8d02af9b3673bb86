# auditlog: `make help` lists the targets. `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BUF       := $(GO) tool buf
GOFLAGS_TEST ?= -race -count=1
# Everything the tests need is started by the tests themselves (see
# internal/testharness); these only point them at servers you run yourself.
export AUDITLOG_TEST_CLICKHOUSE
export AUDITLOG_TEST_KAFKA

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install what the tests and `make run` need (ClickHouse from Debian, Go modules)
	@./scripts/install-clickhouse.sh
	@$(GO) mod download

.PHONY: test-deps
test-deps: deps ## also fetch Apache Kafka's jars (Maven Central) and chDB (npm) for the real-server suites
	@./scripts/kafka/kafka.sh fetch
	@./scripts/chdb/setup.sh

.PHONY: compose-check
compose-check: ## validate docker-compose.yml and its AUDITLOG_* variables (no Docker engine needed)
	@./scripts/compose-check.sh

.PHONY: protodeps
protodeps:
	@./scripts/protodeps.sh

.PHONY: proto
proto: protodeps ## lint the protos and regenerate Go code and the OpenAPI document
	$(BUF) lint
	$(BUF) generate

.PHONY: proto-check
proto-check: proto ## fail if the committed generated code differs from what the protos give
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "proto-check: generated code is stale; run 'make proto' and commit:"; \
		git status --porcelain -- proto; git --no-pager diff --stat -- proto; exit 1; \
	fi
	@echo "proto-check: generated code is up to date"

.PHONY: breaking
breaking: protodeps ## check the protos for WIRE_JSON-breaking changes against main
	$(BUF) breaking --against '.git#branch=main'

.PHONY: lint
lint: ## go vet, gofmt and buf lint
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@$(MAKE) --no-print-directory protodeps
	$(BUF) lint

.PHONY: test
test: test-deps proto-check lint compose-check ## everything CI runs: deps, proto-check, lint, compose check, all tests with -race, then the e2e suite
	$(GO) test $(GOFLAGS_TEST) -timeout 20m $$($(GO) list ./... | grep -v '/e2e$$')
	@$(MAKE) --no-print-directory test-e2e

.PHONY: test-e2e
test-e2e: ## end-to-end fault suite on a real Kafka broker; prints one summary line per scenario (full log: .build/e2e.log)
	@mkdir -p .build
	@set -o pipefail; $(GO) test $(GOFLAGS_TEST) -timeout 20m -v ./e2e 2>&1 | tee .build/e2e.log \
		| grep --line-buffered -E '^(--- |ok|FAIL|panic|e2e summary)' \
		|| { echo "e2e failed; last lines of .build/e2e.log:"; tail -150 .build/e2e.log; exit 1; }

.PHONY: test-short
test-short: ## the fast tests only (skips the slow fault tests)
	$(GO) test -short -count=1 ./...

.PHONY: bench
bench: deps ## benchmarks with figures and ratios against clickhouse-client
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

.PHONY: build
build: ## build bin/auditlog and bin/auditctl
	$(GO) build -o bin/ ./cmd/...

.PHONY: run
run: deps build ## run everything locally: ClickHouse, embedded Kafka, ingester, query service, sample data
	./bin/auditlog dev
