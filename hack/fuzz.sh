#!/usr/bin/env bash
# Runs every fuzz target of the module (every `func FuzzXxx` in a _test.go file) for
# FUZZTIME each, so a new target is fuzzed without editing the Makefile.
set -euo pipefail
# the build's Go release, also when run outside make (README, "Go toolchain")
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
cd "$(dirname "$0")/.."
: "${FUZZTIME:=60s}"
: "${GO:=go}"
targets=$(git ls-files -co --exclude-standard '*_test.go' | xargs grep -H -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/:func / /' | sort)
[ -n "$targets" ] || { echo "no fuzz targets found" >&2; exit 1; }
while read -r file target; do
  pkg="./$(dirname "$file")/"
  echo "== $target ($pkg, $FUZZTIME)"
  "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
done <<< "$targets"
