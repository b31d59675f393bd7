#!/usr/bin/env bash
# `make security`: the static side of the security review (docs/security.md). Runs
# every step even when one fails, then prints each step's verdict and wall time and
# exits 1 if any failed.
#
#   vulns    govulncheck (pinned in hack/security/go.mod) on every shipped module,
#            against a local vulnerability database built from the pinned
#            golang.org/x/vulndb module (offline; VULNDB=https://vuln.go.dev for the
#            live one); reachable findings fail unless accepted in
#            hack/security/accepted-vulns.txt, with the reason written there.
#   lint     golangci-lint's security linters (SECURITY_LINTERS) with .golangci.yml.
#   secrets  the tests proving no Secret value reaches a container's args or env.
#   fuzz     every fuzz target for SECURITY_FUZZTIME (hack/fuzz.sh).
#
# Environment (the Makefile sets them): GO, GOLANGCI_LINT, GOVULNCHECK, INDEXDB,
# VULNCHECK (binaries, relative to the repository root), VULNDB (empty: the local
# database), SECURITY_MODULES, SECURITY_LINTERS, SECURITY_FUZZTIME, SECURITY_STEPS.
set -uo pipefail
# the build's Go release, also when run outside make (README, "Go toolchain")
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
cd "$(dirname "$0")/../.."
root=$PWD
: "${GO:=go}"
: "${GOLANGCI_LINT:=bin/tools/golangci-lint}"
: "${GOVULNCHECK:=bin/tools/govulncheck}"
: "${INDEXDB:=bin/tools/indexdb}"
: "${VULNCHECK:=bin/tools/vulncheck}"
: "${VULNDB:=}"
: "${SECURITY_MODULES:=. e2e}"
: "${SECURITY_LINTERS:=gosec,bidichk,asciicheck,bodyclose,noctx,errcheck}"
: "${SECURITY_FUZZTIME:=10s}"
: "${SECURITY_STEPS:=vulns lint secrets fuzz}"

# The toolchain's own go first on PATH: govulncheck (golang.org/x/tools/go/packages) asks
# `go list` for the Go version with GO111MODULE=off, where the go command does not switch
# toolchains, so the machine's go would answer and the standard library of the newer
# release would be type-checked as the older language ("generic method requires go1.27").
goroot=$("$GO" env GOROOT) || { echo "security: $GO env GOROOT failed" >&2; exit 2; }
export PATH="$goroot/bin:$PATH"

# localdb prints the file:// URL of the vulnerability database of the pinned
# golang.org/x/vulndb, building it once per version under bin/vulndb/<version>
# (indexdb over the module's data/osv; the module comes from the module proxy).
# indexdb leaves the database's modified time at zero: it is set to the time of
# the vulndb commit, which govulncheck reports as the database's age.
localdb() {
  local version dir modified out
  "$GO" -C hack/security mod download golang.org/x/vulndb || return 1
  read -r version dir modified < <("$GO" -C hack/security list -m -f '{{.Version}} {{.Dir}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' golang.org/x/vulndb) || return 1
  [ -n "$version" ] && [ -d "$dir/data/osv" ] || { echo "golang.org/x/vulndb: no data/osv in '$dir'" >&2; return 1; }
  out="$root/bin/vulndb/$version"
  if [ ! -f "$out/index/db.json" ]; then
    echo "building the vulnerability database $version from $(find "$dir/data/osv" -name '*.json' | wc -l) OSV entries" >&2
    rm -rf "$out.tmp" && mkdir -p "$(dirname "$out")" &&
      "$INDEXDB" -vulns "$dir/data/osv" -out "$out.tmp" &&
      printf '{"modified":"%s"}' "$modified" >"$out.tmp/index/db.json" &&
      gzip -c "$out.tmp/index/db.json" >"$out.tmp/index/db.json.gz" &&
      rm -rf "$out" && mv "$out.tmp" "$out" || return 1
  fi
  echo "file://$out"
}

step_vulns() {
  local db=$VULNDB rc=0 m
  if [ -z "$db" ]; then
    db=$(localdb) || { echo "could not build the local vulnerability database" >&2; return 1; }
  fi
  "$GO" -C hack/security test -count=1 ./vulncheck || rc=1
  for m in $SECURITY_MODULES; do
    echo "== govulncheck $m ($db)"
    "$root/$GOVULNCHECK" -C "$m" -format json -db "$db" ./... |
      "$root/$VULNCHECK" -accept "$root/hack/security/accepted-vulns.txt" -name "$m" || rc=1
  done
  return $rc
}

step_lint() {
  local rc=0 m
  for m in $SECURITY_MODULES; do
    echo "== golangci-lint --enable-only=$SECURITY_LINTERS ($m)"
    (cd "$m" && "$root/$GOLANGCI_LINT" run --allow-serial-runners --config "$root/.golangci.yml" --enable-only="$SECURITY_LINTERS" ./...) || rc=1
  done
  return $rc
}

step_secrets() {
  "$GO" test -count=1 -run '^(TestNoSecretValueIn|TestAssertNoMarkerFindsLeaks)' -v ./sidecar/ ./controller/ | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|credential'
}

step_fuzz() {
  FUZZTIME=$SECURITY_FUZZTIME GO=$GO bash hack/fuzz.sh
}

failed=0
summary=()
for s in $SECURITY_STEPS; do
  declare -F "step_$s" >/dev/null || { echo "unknown step $s (vulns, lint, secrets, fuzz)" >&2; exit 2; }
  echo "==== security: $s"
  start=$SECONDS
  if "step_$s"; then verdict=ok; else verdict=FAILED; failed=1; fi
  summary+=("$(printf '%-8s %-6s %4ds' "$s" "$verdict" $((SECONDS - start)))")
done
echo "==== security summary"
printf '%s\n' "${summary[@]}"
exit $failed
