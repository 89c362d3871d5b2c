# sync-all: `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
PKG := github.com/studylab/sync-all
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X $(PKG)/internal/cli.version=$(VERSION) -X $(PKG)/internal/cli.commit=$(COMMIT) -X $(PKG)/internal/cli.date=$(BUILD_DATE)
BIN := bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/sync-all, bin/healthsim and bin/sync-all-demo
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

.PHONY: test
test: ## Run every test (starts its own throwaway PostgreSQL; or set TEST_DATABASE_URL)
	$(GO) test -count=1 -timeout 30m ./...

.PHONY: test-race
test-race: ## Run every test with the race detector
	$(GO) test -count=1 -race -timeout 45m ./...

.PHONY: bench
bench: build ## Run the benchmarks: go test micro-benchmarks, then the store and end-to-end figures against their targets (a table at the end, also in bin/bench.md)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m ./...
	$(BIN)/sync-all-bench --bin $(BIN) --out $(BIN)/bench.md

.PHONY: reliability
reliability: ## Run the fault suite in full (SIGKILLs, database outages, overlap, API faults, skew) and print its figures
	@set -o pipefail; log=$$(mktemp); status=0; \
	RELIABILITY_FULL=1 $(GO) test -count=1 -v -run 'Test' -timeout 60m ./internal/reliability/ 2>&1 | tee $$log || status=$$?; \
	echo; echo "Reliability figures (internal/reliability/RESULTS.md has the latest recorded ones):"; \
	grep -o 'RELIABILITY .*' $$log | sed 's/^RELIABILITY //' | \
		awk '{ line = sprintf("  %-10s", $$1); for (i = 2; i <= NF; i++) { if (length(line) + length($$i) > 110) { print line; line = sprintf("  %-10s", "") } line = line " " $$i } print line }'; \
	rm -f $$log; exit $$status

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: migrate
migrate: build ## Apply database migrations to DATABASE_URL
	$(BIN)/sync-all migrate

.PHONY: demo
demo: build ## Run the real job end to end against a throwaway PostgreSQL and the simulator
	$(BIN)/sync-all-demo --bin $(BIN)

.PHONY: clean
clean: ## Remove build output and the demo's state
	rm -rf $(BIN) .demo
