# flagpole build. Everything the targets need comes from the Go module proxy.
SHELL := /bin/bash
GO ?= go
BIN := bin/flagpole
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
FUZZTIME ?= 60s
# golangci-lint, pinned in hack/lint/go.mod (a module of its own) and built from it.
GOLANGCI_LINT := bin/tools/golangci-lint
# govulncheck, the vulnerability database (golang.org/x/vulndb's OSV data, indexed by
# its cmd/indexdb) and the report filter, pinned in hack/security/go.mod. VULNDB empty:
# the local database under bin/vulndb/<vulndb version> (offline); VULNDB=https://vuln.go.dev
# for the live one. SECURITY_STEPS runs a subset (vulns lint secrets fuzz).
SECURITY_TOOLS := bin/tools/govulncheck bin/tools/indexdb bin/tools/vulncheck
VULNDB ?=
SECURITY_FUZZTIME ?= 10s
SECURITY_STEPS ?= vulns lint secrets fuzz
EXAMPLE_FLAGS ?= deploy/examples/flags/example-flags.json

.PHONY: build run test lint bench fuzz clean generate verify load size propagation hostile e2e admission-load controller-scale proxy-fanout

build: ## build bin/flagpole
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

run: build ## flagd mode on the bundled example flags (Ctrl-C to stop)
	$(BIN) flagd start --uri file:$(EXAMPLE_FLAGS) --log-format console

test: lint verify ## unit, conformance, fuzz-seed and CLI tests
	$(GO) test -count=1 ./...

e2e: ## end-to-end tests on a local kube-apiserver + etcd (see e2e/README.md; the first run builds them, ~6 min)
	cd e2e && $(GO) vet ./... && $(GO) test -count=1 -timeout 30m -v ./...

admission-load: ## pod creates with and without the webhook (p50/p99, pods/s) and the webhook's RSS up to 3,000 pods, on the e2e control plane (a benchmark: prints figures)
	cd e2e && $(GO) run ./bench/admissionload $(ADMISSIONFLAGS)

controller-scale: ## 1,000 FeatureFlags and 200 Flagds: time to reconcile all (cold and restart), RSS, API requests, writes in a steady state (a benchmark: prints figures)
	cd e2e && $(GO) run ./bench/controllerscale $(SCALEFLAGS)

proxy-fanout: ## flagd-proxy: 1,000 authenticated streams over 100 FeatureFlags: RSS, CPU per update, update → last stream p50/p99 (a benchmark: prints figures; options via FANOUTFLAGS)
	cd e2e && $(GO) run ./bench/proxyfanout $(FANOUTFLAGS)

lint: $(GOLANGCI_LINT) ## go vet, the gofmt check, and golangci-lint (.golangci.yml) on the main and e2e modules
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GOLANGCI_LINT) run ./...
	cd e2e && ../$(GOLANGCI_LINT) run ./...

# Built when missing or older than its pin; go's build cache makes a rebuild cheap.
$(GOLANGCI_LINT): hack/lint/go.mod hack/lint/go.sum
	@mkdir -p $(@D)
	$(GO) -C hack/lint build -o $(CURDIR)/$@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint
	@touch $@

.PHONY: security
security: $(GOLANGCI_LINT) $(SECURITY_TOOLS) ## static security checks (docs/security.md): govulncheck on an offline database, the security linters, no Secret value in args or env, every fuzz target for $(SECURITY_FUZZTIME)
	GO=$(GO) GOLANGCI_LINT=$(GOLANGCI_LINT) VULNDB=$(VULNDB) SECURITY_FUZZTIME=$(SECURITY_FUZZTIME) SECURITY_STEPS="$(SECURITY_STEPS)" bash hack/security/check.sh

bin/tools/govulncheck: hack/security/go.mod hack/security/go.sum
	@mkdir -p $(@D)
	$(GO) -C hack/security build -o $(CURDIR)/$@ golang.org/x/vuln/cmd/govulncheck
	@touch $@

bin/tools/indexdb: hack/security/go.mod hack/security/go.sum
	@mkdir -p $(@D)
	$(GO) -C hack/security build -o $(CURDIR)/$@ golang.org/x/vulndb/cmd/indexdb
	@touch $@

bin/tools/vulncheck: hack/security/go.mod $(wildcard hack/security/vulncheck/*.go)
	@mkdir -p $(@D)
	$(GO) -C hack/security build -o $(CURDIR)/$@ ./vulncheck

generate: ## regenerate deepcopy, clientset, listers, informers, applyconfigurations and CRD manifests from crd/apis
	bash hack/update-codegen.sh

verify: ## fail if the code or CRD manifests generated from crd/apis are stale
	bash hack/verify-codegen.sh

bench: ## evaluator benchmarks
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./flagd/eval/

load: build ## flagd-mode load harness (bench/load): startup, RSS, req/s, p50/p99 per workload; options via LOADFLAGS="-duration 5s -out load.md"
	$(GO) run ./bench/load -bin $(BIN) $(LOADFLAGS)

size: build ## sidecar budgets of the single binary: binary size, first correct answer after exec and idle RSS with 1,000 flags (a report: over-budget figures are marked, never failed)
	$(GO) run ./bench/load -bin $(BIN) -startup-only $(SIZEFLAGS)

hostile: build ## hostile-input regression harness (bench/hostile, ~12 min): replays the probe's attacks, RSS/goroutines/p50 per attack; options via HOSTILEFLAGS="-attacks deep-json -out hostile.md"
	$(GO) run ./bench/hostile -bin $(BIN) $(HOSTILEFLAGS)

propagation: ## time from a flag file change to the new value served (20 renames, 20 ConfigMap ..data swaps)
	$(GO) run ./bench/propagation -n 20

fuzz: ## run every fuzz target of the module for $(FUZZTIME) each (found by hack/fuzz.sh)
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash hack/fuzz.sh

clean:
	rm -rf bin
