# flagpole build. Everything the targets need comes from the Go module proxy.
SHELL := /bin/bash
# The Go release of the build, tests and tools: go1.27.3, which the go command takes from
# the module proxy on first use (76 MB, cached in the module cache). The machine's Go
# (1.26.8, GOTOOLCHAIN=local in its go.env) ignores go.mod's toolchain line, and its
# standard library has known vulnerabilities (docs/security.md). Exported, so every go
# command, script and test binary a target starts uses it; `make GOTOOLCHAIN=local` (or the
# variable in the environment) overrides it.
export GOTOOLCHAIN ?= go1.27.3
GO ?= go
BIN := bin/flagpole
# The version comes from the newest v* tag (git describe: v1.2.3, or v1.2.3-4-gabc1234
# after it, -dirty with local changes; the short commit without a tag). The build date is
# the commit's, not the clock's, so that two builds of a commit are the same bytes.
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DATE ?= $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r $(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
FUZZTIME ?= 60s
# golangci-lint, pinned in hack/lint/go.mod (a module of its own) and built from it.
GOLANGCI_LINT := bin/tools/golangci-lint
# The analysis tools (golangci-lint, govulncheck) are rebuilt when GOTOOLCHAIN changes: one
# built by an older Go cannot type-check a newer standard library.
TOOLCHAIN_STAMP := bin/tools/.go-$(GOTOOLCHAIN)
# govulncheck, the vulnerability database (golang.org/x/vulndb's OSV data, indexed by
# its cmd/indexdb) and the report filter, pinned in hack/security/go.mod. VULNDB empty:
# the local database under bin/vulndb/<vulndb version> (offline); VULNDB=https://vuln.go.dev
# for the live one. SECURITY_STEPS runs a subset (vulns lint secrets fuzz).
SECURITY_TOOLS := bin/tools/govulncheck bin/tools/indexdb bin/tools/vulncheck
VULNDB ?=
SECURITY_FUZZTIME ?= 10s
SECURITY_STEPS ?= vulns lint secrets fuzz
EXAMPLE_FLAGS ?= deploy/examples/flags/example-flags.json

.PHONY: build run test lint bench fuzz clean generate verify load size propagation hostile e2e admission-load controller-scale proxy-fanout load-compare
.PHONY: image image-binaries image-test image-verify image-push deploy-crds chart-docs deploy-test release-manifests

build: ## build bin/flagpole
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

run: build ## flagd mode on the bundled example flags (Ctrl-C to stop)
	$(BIN) flagd start --uri file:$(EXAMPLE_FLAGS) --log-format console

test: lint verify ## unit, conformance, fuzz-seed and CLI tests
	$(GO) version
	$(GO) test -count=1 ./...

e2e: ## end-to-end tests on a local kube-apiserver + etcd (see e2e/README.md; the first run builds them, ~6 min)
	$(GO) version
	cd e2e && $(GO) vet ./... && $(GO) test -count=1 -timeout 30m -v ./...

admission-load: ## pod creates with and without the webhook (p50/p99, pods/s) and the webhook's RSS up to 3,000 pods, on the e2e control plane (a benchmark: prints figures)
	cd e2e && $(GO) run ./bench/admissionload $(ADMISSIONFLAGS)

controller-scale: ## 1,000 FeatureFlags and 200 Flagds: time to reconcile all (cold and restart), RSS, API requests, writes in a steady state (a benchmark: prints figures)
	cd e2e && $(GO) run ./bench/controllerscale $(SCALEFLAGS)

proxy-fanout: ## flagd-proxy: 1,000 authenticated streams over 100 FeatureFlags: RSS, CPU per update, update → last stream p50/p99 (a benchmark: prints figures; options via FANOUTFLAGS)
	cd e2e && $(GO) run ./bench/proxyfanout $(FANOUTFLAGS)

lint: $(GOLANGCI_LINT) ## go vet, the gofmt check, and golangci-lint (.golangci.yml) on the main and e2e modules
	$(GO) version
	$(GO) vet ./...
	@out=$$("$$($(GO) env GOROOT)/bin/gofmt" -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GOLANGCI_LINT) run --allow-serial-runners ./...
	cd e2e && ../$(GOLANGCI_LINT) run --allow-serial-runners ./...

# Built when missing or older than its pin; go's build cache makes a rebuild cheap.
$(GOLANGCI_LINT): hack/lint/go.mod hack/lint/go.sum $(TOOLCHAIN_STAMP)
	@mkdir -p $(@D)
	$(GO) -C hack/lint build -o $(CURDIR)/$@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint
	@touch $@

.PHONY: security
security: $(GOLANGCI_LINT) $(SECURITY_TOOLS) ## static security checks (docs/security.md): govulncheck on an offline database, the security linters, no Secret value in args or env, every fuzz target for $(SECURITY_FUZZTIME)
	$(GO) version
	GO=$(GO) GOLANGCI_LINT=$(GOLANGCI_LINT) VULNDB=$(VULNDB) SECURITY_FUZZTIME=$(SECURITY_FUZZTIME) SECURITY_STEPS="$(SECURITY_STEPS)" bash hack/security/check.sh

$(TOOLCHAIN_STAMP):
	@mkdir -p $(@D) && rm -f $(@D)/.go-* && touch $@

bin/tools/govulncheck: hack/security/go.mod hack/security/go.sum $(TOOLCHAIN_STAMP)
	@mkdir -p $(@D)
	$(GO) -C hack/security build -o $(CURDIR)/$@ golang.org/x/vuln/cmd/govulncheck
	@touch $@

bin/tools/indexdb: hack/security/go.mod hack/security/go.sum $(TOOLCHAIN_STAMP)
	@mkdir -p $(@D)
	$(GO) -C hack/security build -o $(CURDIR)/$@ golang.org/x/vulndb/cmd/indexdb
	@touch $@

bin/tools/vulncheck: hack/security/go.mod $(wildcard hack/security/vulncheck/*.go) $(TOOLCHAIN_STAMP)
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

load-compare: build ## every load workload (floors, gRPC per RPC type, OFREP bulk and 304, fan-out), 3 rounds; COMPARE=path/to/flagd also runs a flagd-compatible binary, interleaved, and prints the ratios
	$(GO) run ./bench/load -bin $(BIN) -rounds 3 -duration 5s $(if $(COMPARE),-compare $(COMPARE)) $(LOADFLAGS)

size: build ## sidecar budgets of the single binary: binary size, first correct answer after exec and idle RSS with 1,000 flags (a report: over-budget figures are marked, never failed)
	$(GO) run ./bench/load -bin $(BIN) -startup-only $(SIZEFLAGS)

hostile: build ## hostile-input regression harness (bench/hostile, ~12 min): replays the probe's attacks, RSS/goroutines/p50 per attack; options via HOSTILEFLAGS="-attacks deep-json -out hostile.md"
	$(GO) run ./bench/hostile -bin $(BIN) $(HOSTILEFLAGS)

propagation: ## time from a flag file change to the new value served (20 renames, 20 ConfigMap ..data swaps)
	$(GO) run ./bench/propagation -n 20

fuzz: ## run every fuzz target of the module for $(FUZZTIME) each (found by hack/fuzz.sh)
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash hack/fuzz.sh

# The image (docs/install.md, "The image"): assembled by hack/image with
# go-containerregistry, no Docker engine and no base image. Output in $(IMAGE_DIR):
# oci/ (OCI layout, linux/amd64 + linux/arm64), flagpole-<version>-linux-<arch>.tar
# (docker load), flagpole-<version>.tar (this machine's architecture), image.json,
# flagpole-<version>-linux-<arch>.spdx.json (SPDX 2.3 SBOMs, also in oci/ as OCI
# artifacts referring to each image), rootfs/linux_<arch>/ (the Dockerfile's build context).
IMAGE_REPO ?= ghcr.io/flagpole-dev/flagpole
IMAGE_DIR ?= bin/image
SOURCE_URL ?= https://github.com/flagpole-dev/flagpole
IMAGE_ARCHES := amd64 arm64
IMAGE_TOOL := bin/tools/image
# IMAGE_REBUILD_FLAGS=-a makes image-verify's second build ignore the build cache
# (every package compiled again: ~15 min on 2 busy cores, so not the default).
IMAGE_REBUILD_FLAGS ?=
IMAGE_META = -repository $(IMAGE_REPO) -version $(VERSION) -revision $(REVISION) -source $(SOURCE_URL) -created $(SOURCE_DATE_EPOCH)

image-binaries: ## static linux binaries of every image architecture in bin/linux_<arch>/
	for a in $(IMAGE_ARCHES); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/linux_$$a/flagpole . || exit 1; \
	done

$(IMAGE_TOOL): FORCE
	$(GO) -C hack/image build -o $(CURDIR)/$(IMAGE_TOOL) .

image: image-binaries $(IMAGE_TOOL) ## the multi-arch OCI image, without Docker, in $(IMAGE_DIR) (docs/install.md)
	$(IMAGE_TOOL) build -out $(IMAGE_DIR) $(IMAGE_META) $(foreach a,$(IMAGE_ARCHES),-binary $(a)=bin/linux_$(a)/flagpole)

image-test: ## the image tool's unit tests (hack/image, a module of its own: SBOM, OCI artifact, verification, push to an in-process registry)
	$(GO) -C hack/image test -count=1 ./...

image-verify: build image image-test ## check the image (config, files, binaries, archives, SBOMs), rebuild it to prove it reproducible, and (IMAGE_DOCKER=1) load, run and rebuild it with a real Docker engine
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	  echo "rebuilding the binaries ($(or $(IMAGE_REBUILD_FLAGS),from the build cache)) and the image in $$tmp"; \
	  for a in $(IMAGE_ARCHES); do \
	    CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build $(IMAGE_REBUILD_FLAGS) -trimpath -ldflags '$(LDFLAGS)' -o $$tmp/linux_$$a/flagpole . || exit 1; \
	  done; \
	  $(IMAGE_TOOL) build -out $$tmp/image $(IMAGE_META) $(foreach a,$(IMAGE_ARCHES),-binary $(a)=$$tmp/linux_$(a)/flagpole) >/dev/null && \
	  $(IMAGE_TOOL) verify -dir $(IMAGE_DIR) $(IMAGE_META) -host-binary $(BIN) -want-digest $$($(IMAGE_TOOL) digest -dir $$tmp/image) \
	    -rebuild $$tmp/image -go $(GO)
	@if [ "$(IMAGE_DOCKER)" = 1 ]; then bash hack/image/docker-verify.sh $(IMAGE_DIR); fi

image-push: image ## push the image index and its SBOM artifacts to $(REGISTRY)/flagpole:<version> (credentials: docker login / credential helpers)
	@test -n "$(REGISTRY)" || { echo "make image-push REGISTRY=registry.example.com/team"; exit 2; }
	$(IMAGE_TOOL) push -dir $(IMAGE_DIR) -repository $(REGISTRY)/flagpole

FORCE:

deploy-crds: ## copy crd/manifests into deploy/base/crds and the chart's crds/ (kustomize and Helm load no file outside their directory; go test ./deploy fails when they differ)
	for d in deploy/base/crds deploy/chart/flagpole/crds; do mkdir -p $$d && rm -f $$d/*.yaml && cp crd/manifests/*.yaml $$d/ || exit 1; done

# deploy/tools: kustomize and Helm rendering, checks and release manifests, in a module
# of its own (helm.sh/helm/v4 stays out of the main go.mod).
DEPLOYTOOL := bin/tools/deploytool
RELEASE_DIR ?= bin/release

$(DEPLOYTOOL): FORCE
	$(GO) -C deploy/tools build -o $(CURDIR)/$(DEPLOYTOOL) ./cmd/deploytool

chart-docs: $(DEPLOYTOOL) ## write the values table of deploy/chart/flagpole/README.md from values.yaml (deploy-test fails when it is stale)
	$(DEPLOYTOOL) chart-docs

deploy-test: ## render every kustomize variant and the Helm chart and check them (deploy/tools), and go test ./deploy
	$(GO) test ./deploy/
	$(GO) -C deploy/tools test ./...

release-manifests: image $(DEPLOYTOOL) ## $(RELEASE_DIR)/install.yaml (deploy/default, the image pinned by digest) and crds.yaml; IMAGE_REPO names the registry the image is pushed to
	$(DEPLOYTOOL) release -version $(VERSION) -out $(RELEASE_DIR) \
	  -image $(IMAGE_REPO):$(VERSION)@$$($(IMAGE_TOOL) digest -dir $(IMAGE_DIR))

clean:
	rm -rf bin

.PHONY: kind-e2e kind-up kind-install kind-test kind-down
kind-e2e: ## e2e on a kind cluster (e2e/README.md, "kind"): engine, node image, cluster, `make image` loaded, API-server suite, operator from deploy/default, SDK-app scenarios; torn down after (FLAGPOLE_KIND_KEEP=1 keeps it)
	bash e2e/kind/run.sh e2e

kind-up: ## the kind cluster of kind-e2e, kept (KUBECONFIG printed); then kind-install, kind-test, kind-down
	bash e2e/kind/run.sh up

kind-install: ## install the operator from deploy/default into the kind-up cluster (the image under test)
	bash e2e/kind/run.sh install

kind-test: ## the e2e suites against the kind-up cluster (FLAGPOLE_KIND_RUN=TestX for some scenarios, FLAGPOLE_KIND_ONLY=1 to skip the API-server suite)
	bash e2e/kind/run.sh test

kind-down: ## delete the kind cluster and everything kind-up made (network, engine it started)
	bash e2e/kind/run.sh down
