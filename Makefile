# flagpole build. Everything the targets need comes from the Go module proxy.
SHELL := /bin/bash
GO ?= go
BIN := bin/flagpole
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
FUZZTIME ?= 60s
EXAMPLE_FLAGS ?= deploy/examples/flags/example-flags.json

.PHONY: build run test lint bench fuzz clean

build: ## build bin/flagpole
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

run: build ## evaluate every bundled example flag (flagd mode takes over once it exists)
	$(BIN) debug eval --flags $(EXAMPLE_FLAGS) --targeting-key user-1234 --context '{"email":"ada@example.com","version":"2.3.0"}'

test: lint ## unit, conformance, fuzz-seed and CLI tests
	$(GO) test -count=1 ./...

lint: ## go vet + gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

bench: ## evaluator benchmarks
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./flagd/eval/

fuzz: ## run each fuzz target for $(FUZZTIME)
	$(GO) test -run '^$$' -fuzz '^FuzzParseCompileEvaluate$$' -fuzztime $(FUZZTIME) ./flagd/flags/

clean:
	rm -rf bin
