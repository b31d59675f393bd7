#!/usr/bin/env bash
# Regenerates everything derived from the API types in crd/apis:
#   crd/apis/core/v1beta1/zz_generated.deepcopy.go   deepcopy-gen
#   crd/generated/applyconfiguration                 applyconfiguration-gen, with the
#                                                    schemas of the CRD manifests (crd-openapi)
#   crd/generated/clientset                          client-gen
#   crd/generated/listers, crd/generated/informers   lister-gen, informer-gen
#   crd/manifests/*.yaml                             controller-gen (CRD manifests)
# The generators are pinned in hack/tools/go.mod (k8s.io/code-generator v0.34.4,
# sigs.k8s.io/controller-tools v0.19.0) and built, with hack/tools/crd-openapi, into
# $TOOLS_BIN (default bin/tools); they never enter the main module.
# Usage: hack/update-codegen.sh [repo-root]
set -euo pipefail
# the build's Go release, also when run outside make (README, "Go toolchain")
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"

SCRIPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROOT="$(cd "${1:-${SCRIPT_ROOT}}" && pwd -P)"
TOOLS_BIN="${TOOLS_BIN:-${SCRIPT_ROOT}/bin/tools}"

MODULE=github.com/flagpole-dev/flagpole
API_PKG="${MODULE}/crd/apis/core/v1beta1"
OUT_PKG="${MODULE}/crd/generated"
BOILERPLATE="${SCRIPT_ROOT}/hack/boilerplate.go.txt"

# Build the pinned generators (go's build cache makes this a no-op when up to date).
mkdir -p "${TOOLS_BIN}"
go -C "${SCRIPT_ROOT}/hack/tools" build -o "${TOOLS_BIN}/" \
	k8s.io/code-generator/cmd/deepcopy-gen \
	k8s.io/code-generator/cmd/applyconfiguration-gen \
	k8s.io/code-generator/cmd/client-gen \
	k8s.io/code-generator/cmd/lister-gen \
	k8s.io/code-generator/cmd/informer-gen \
	sigs.k8s.io/controller-tools/cmd/controller-gen \
	./crd-openapi

cd "${ROOT}"

# Go 1.27 implements encoding/json with encoding/json/v2, and its json.RawMessage is an
# alias of jsontext.Value: the generators (go/types) would write the alias's target,
# encoding/json/jsontext (which Go 1.26 lacks), where crd/apis says json.RawMessage. With
# nojsonv2 they load encoding/json as Go 1.26 has it: the same output under either release.
export GOEXPERIMENT="${GOEXPERIMENT:+${GOEXPERIMENT},}nojsonv2"

# Start from nothing, so that files of removed types do not linger.
rm -rf crd/generated crd/apis/core/v1beta1/zz_generated.deepcopy.go
find crd/manifests -name '*.yaml' -delete 2>/dev/null || true

"${TOOLS_BIN}/deepcopy-gen" \
	--go-header-file "${BOILERPLATE}" \
	--output-file zz_generated.deepcopy.go \
	"${API_PKG}"

"${TOOLS_BIN}/controller-gen" \
	crd:crdVersions=v1 \
	paths=./crd/apis/... \
	output:crd:artifacts:config=crd/manifests

# applyconfiguration-gen takes the OpenAPI schema of the kinds from the CRD manifests,
# so that the apply configurations get Extract* functions and a typed schema.
OPENAPI="$(mktemp)"
trap 'rm -f "${OPENAPI}"' EXIT
"${TOOLS_BIN}/crd-openapi" -go-package "${API_PKG}" crd/manifests/*.yaml >"${OPENAPI}"

"${TOOLS_BIN}/applyconfiguration-gen" \
	--go-header-file "${BOILERPLATE}" \
	--openapi-schema "${OPENAPI}" \
	--output-dir crd/generated/applyconfiguration \
	--output-pkg "${OUT_PKG}/applyconfiguration" \
	"${API_PKG}"

"${TOOLS_BIN}/client-gen" \
	--go-header-file "${BOILERPLATE}" \
	--output-dir crd/generated/clientset \
	--output-pkg "${OUT_PKG}/clientset" \
	--clientset-name versioned \
	--apply-configuration-package "${OUT_PKG}/applyconfiguration" \
	--input-base "${MODULE}/crd/apis" \
	--input core/v1beta1

"${TOOLS_BIN}/lister-gen" \
	--go-header-file "${BOILERPLATE}" \
	--output-dir crd/generated/listers \
	--output-pkg "${OUT_PKG}/listers" \
	"${API_PKG}"

"${TOOLS_BIN}/informer-gen" \
	--go-header-file "${BOILERPLATE}" \
	--output-dir crd/generated/informers \
	--output-pkg "${OUT_PKG}/informers" \
	--versioned-clientset-package "${OUT_PKG}/clientset/versioned" \
	--listers-package "${OUT_PKG}/listers" \
	"${API_PKG}"


"$(go env GOROOT)/bin/gofmt" -w crd/apis crd/generated
