#!/usr/bin/env bash
# Fails when the code or the CRD manifests generated from crd/apis are stale: runs
# hack/update-codegen.sh on a temporary copy of the repository and compares the
# generated paths with the work tree, listing every file that differs, is missing or
# should not be there.
set -euo pipefail
# the build's Go release, also when run outside make (README, "Go toolchain")
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

# The generators read the API types (which import nothing else from the main module),
# go.mod and go.sum; copying only these keeps the check independent of work in progress
# elsewhere in the tree.
cp "${ROOT}/go.mod" "${ROOT}/go.sum" "${TMP}/"
cp -R "${ROOT}/crd" "${TMP}/crd"

if ! "${ROOT}/hack/update-codegen.sh" "${TMP}" >"${TMP}.log" 2>&1; then
	cat "${TMP}.log" >&2
	rm -f "${TMP}.log"
	echo "verify-codegen: hack/update-codegen.sh failed" >&2
	exit 1
fi
rm -f "${TMP}.log"

GENERATED=(crd/apis/core/v1beta1/zz_generated.deepcopy.go crd/generated crd/manifests)
stale=()
for p in "${GENERATED[@]}"; do
	while IFS= read -r line; do
		case "${line}" in
		"Files "*) f="${line#Files "${ROOT}/"}"; stale+=("changed: ${f%% and *}") ;;
		"Only in ${ROOT}/"*) d="${line#Only in "${ROOT}/"}"; stale+=("not generated (delete it): ${d%%: *}/${d#*: }") ;;
		"Only in ${TMP}/"*) d="${line#Only in "${TMP}/"}"; stale+=("missing: ${d%%: *}/${d#*: }") ;;
		*) stale+=("${line}") ;;
		esac
	done < <(diff -rq "${ROOT}/${p}" "${TMP}/${p}" 2>&1 || true)
done

if [ "${#stale[@]}" -gt 0 ]; then
	echo "Generated code is stale; run 'make generate' and commit the result:" >&2
	printf '  %s\n' "${stale[@]}" >&2
	exit 1
fi
echo "Generated code is up to date."
