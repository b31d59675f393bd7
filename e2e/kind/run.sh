#!/usr/bin/env bash
# run.sh: the kind e2e (make kind-e2e, kind-up, kind-down). See e2e/README.md.
#
#   run.sh e2e    up, then the e2e suite against the cluster, then down (always,
#                 also after a failure or Ctrl-C; FLAGPOLE_KIND_KEEP=1 keeps it all)
#   run.sh up     Docker engine (hack/docker-up.sh), node image (node-image.sh),
#                 cluster from e2e/kind/, flagpole and test-app images loaded
#   run.sh load   rebuild what changed of the flagpole and test-app images and load
#                 them into the running cluster
#   run.sh install  the operator from deploy/default (install.sh), image under test
#   run.sh test   against a cluster `up` made: the API-server e2e suite, then the
#                 operator installed, then the kind scenarios and figures (e2e/kindtest)
#   run.sh down   delete the cluster and what was made for it: the kind network, the
#                 /lib/modules mount point kind made, the engine docker-up started
#
# State (kubeconfig, what was created) lives in $FLAGPOLE_KIND_STATE (default
# <user cache>/flagpole-e2e/kind-<cluster>); the kubeconfig is <state>/kubeconfig.
set -euo pipefail
# the build's Go release, also when run outside make (README, "Go toolchain")
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${FLAGPOLE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flagpole-e2e}"
cluster="${FLAGPOLE_KIND_CLUSTER:-flagpole-e2e}"
state="${FLAGPOLE_KIND_STATE:-$cache/kind-$cluster}"
kubeconfig="$state/kubeconfig"
export GOWORK=off
log() { echo "kind-e2e: $*" >&2; }
phase() { log "$1 ($((SECONDS - phase_start)) s)"; phase_start=$SECONDS; }
phase_start=$SECONDS

# kind_bin builds kind from the version pinned in e2e/kind/tools (once per version).
kind_bin() {
	local v out
	v=$(cd "$here/tools" && go list -m -f '{{.Version}}' sigs.k8s.io/kind)
	out="$cache/bin/kind-$v"
	if [ ! -x "$out" ]; then
		mkdir -p "$cache/bin"
		(cd "$here/tools" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" sigs.k8s.io/kind && mv "$out.tmp" "$out")
	fi
	echo "$out"
}

# kubectl_bin builds kubectl from the Kubernetes pinned in e2e/tools (once per version).
kubectl_bin() {
	local v out
	v=$(cd "$repo/e2e/tools" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
	out="$cache/bin/kubectl-$v"
	if [ ! -x "$out" ]; then
		mkdir -p "$cache/bin"
		(cd "$repo/e2e/tools" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitVersion=$v" -o "$out.tmp" k8s.io/kubernetes/cmd/kubectl && mv "$out.tmp" "$out")
	fi
	echo "$out"
}

engine() {
	local env
	env=$("$repo/hack/docker-up.sh")
	eval "$env"
	mkdir -p "$state"
	echo "$env" >"$state/docker-env"
}

# image_archive prints the docker-loadable archive of the flagpole image under test:
# $FLAGPOLE_IMAGE_ARCHIVE, else what `make image` writes for this machine's
# architecture (bin/image/flagpole-<version>.tar, docs/install.md).
image_archive() {
	local a
	if [ -n "${FLAGPOLE_IMAGE_ARCHIVE:-}" ]; then
		echo "$FLAGPOLE_IMAGE_ARCHIVE"
		return
	fi
	make -C "$repo" -s image >&2
	a=$(find "$repo/bin/image" -maxdepth 1 -name 'flagpole-*.tar' ! -name '*-linux-*' | head -n 1)
	[ -s "$a" ] || { log "make image wrote no bin/image/flagpole-<version>.tar"; exit 1; }
	echo "$a"
}

# archive_tag prints the first repo:tag of a docker-save archive.
archive_tag() { tar -xOf "$1" manifest.json | jq -r '.[0].RepoTags[0]'; }

up() {
	local kind node_image config
	mkdir -p "$state"
	engine
	phase "engine ready"
	kind=$(kind_bin)
	node_image=$("$here/node-image.sh")
	phase "node image $node_image"
	config="$here/cluster.yaml"
	case "$node_image" in flagpole.local/*) config="$here/cluster-local-node.yaml" ;; esac
	# What kind is about to create on the host, recorded once per state (down removes it).
	if [ ! -e "$state/recorded" ]; then
		docker network inspect kind >/dev/null 2>&1 || : >"$state/network-created"
		[ -e /lib/modules ] || : >"$state/lib-modules-created"
		: >"$state/recorded"
	fi
	if "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
		log "cluster $cluster exists: deleting it first"
		"$kind" delete cluster --name "$cluster" >&2
	fi
	"$kind" create cluster --name "$cluster" --image "$node_image" --config "$config" \
		--kubeconfig "$kubeconfig" --wait 3m >&2
	phase "cluster $cluster created"
	echo "$node_image" >"$state/node-image"
	load_images
	log "cluster $cluster is up: KUBECONFIG=$kubeconfig (run.sh install, run.sh test, run.sh down)"
}

# load_images builds (or reuses) the flagpole image and the test apps' image, loads
# them into the cluster's node and writes the tests' environment. Run alone (run.sh
# load) it refreshes a running cluster after a change to flagpole or the apps.
load_images() {
	local kind archive image apps apps_image
	kind=$(kind_bin)
	archive=$(image_archive)
	image=$(archive_tag "$archive")
	apps=$("$repo/e2e/apps/build.sh")
	apps_image=$(archive_tag "$apps")
	phase "images $image, $apps_image"
	"$kind" load image-archive --name "$cluster" "$archive" >&2
	"$kind" load image-archive --name "$cluster" "$apps" >&2
	{
		echo "FLAGPOLE_E2E_IMAGE=$image"
		echo "FLAGPOLE_E2E_APPS_IMAGE=$apps_image"
		echo "FLAGPOLE_E2E_KUBECTL=$(kubectl_bin)"
		echo "FLAGPOLE_E2E_NODE_IMAGE=$(cat "$state/node-image")"
		echo "FLAGPOLE_E2E_KIND_NODE=$cluster-control-plane"
		echo "FLAGPOLE_E2E_INSTALL=$here/install.sh"
		echo "FLAGPOLE_E2E_OPERATOR_NAMESPACE=flagpole-system"
		echo "FLAGPOLE_E2E_OPERATOR_DEPLOYMENT=flagpole-operator"
	} >"$state/env"
	phase "images loaded"
}

# load_env reads what up wrote: the engine's DOCKER_HOST and the tests' environment.
load_env() {
	[ -s "$kubeconfig" ] && [ -s "$state/env" ] || { log "no cluster: run.sh up first"; exit 1; }
	eval "$(cat "$state/docker-env")"
	set -a
	# shellcheck disable=SC1091
	. "$state/env"
	set +a
	export KUBECONFIG="$kubeconfig"
}

# install installs the operator from deploy/default with the image under test.
install() {
	load_env
	"$here/install.sh" "$kubeconfig" "$FLAGPOLE_E2E_IMAGE"
	phase "operator installed"
}

# run_tests runs, against the cluster: the API-server suite (every e2e package but
# kindtest, FLAGPOLE_E2E_EXISTING_CLUSTER=true), before the operator is installed (its
# validating webhooks would refuse what that suite expects the API server alone to
# judge); then the operator from deploy/default; then the kindtest scenarios.
run_tests() {
	local pkgs
	load_env
	cd "$repo/e2e"
	export FLAGPOLE_E2E_EXISTING_CLUSTER=true FLAGPOLE_E2E_KIND=true
	local flags=(-count=1 -p 1 ${FLAGPOLE_KIND_TESTFLAGS:--v})
	if [ -z "${FLAGPOLE_KIND_ONLY:-}" ]; then
		pkgs=$(go list ./... | grep -v /kindtest)
		# shellcheck disable=SC2086
		# TestWebhookCerts* register webhooks by URL on 127.0.0.1, which the kind node's
		# API server cannot reach, and (unlike the other webhook tests) do not skip on an
		# existing cluster; TestWebhookCertificateReissued covers them in the cluster.
		go test "${flags[@]}" -timeout 20m -skip "${FLAGPOLE_KIND_API_SKIP:-^TestWebhookCerts}" $pkgs
		phase "API-server suite passed on the kind cluster"
	fi
	install
	# The scenarios (in parallel), then the figures of issue 15 item 4 — benchmarks run
	# once each, alone on the cluster (FLAGPOLE_KIND_BENCH='^$' skips them; go test
	# runs them only when every test passed). FLAGPOLE_KIND_RUN / FLAGPOLE_KIND_SKIP
	# select scenarios.
	go test "${flags[@]}" -timeout "${FLAGPOLE_KIND_TIMEOUT:-40m}" ${FLAGPOLE_KIND_RUN:+-run "$FLAGPOLE_KIND_RUN"} ${FLAGPOLE_KIND_SKIP:+-skip "$FLAGPOLE_KIND_SKIP"} \
		-bench "${FLAGPOLE_KIND_BENCH:-.}" -benchtime 1x ./kindtest/
	phase "kind scenarios passed"
}

down() {
	local kind
	if [ -s "$state/docker-env" ]; then eval "$(cat "$state/docker-env")"; fi
	if docker info >/dev/null 2>&1; then
		kind=$(kind_bin)
		if "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
			"$kind" delete cluster --name "$cluster" >&2
		fi
		if [ -e "$state/network-created" ] && docker network inspect kind >/dev/null 2>&1; then
			docker network rm kind >/dev/null && log "removed the docker network kind"
		fi
	fi
	if [ -e "$state/lib-modules-created" ] && [ -d /lib/modules ]; then
		rmdir /lib/modules 2>/dev/null && log "removed the empty /lib/modules kind's node mount made"
	fi
	"$repo/hack/docker-down.sh"
	rm -rf "$state"
}

case "${1:-}" in
up) up ;;
load)
	[ -s "$kubeconfig" ] || { log "no cluster: run.sh up first"; exit 1; }
	eval "$(cat "$state/docker-env")"
	load_images
	;;
install) install ;;
test) run_tests ;;
down) down ;;
e2e)
	if [ -z "${FLAGPOLE_KIND_KEEP:-}" ]; then
		trap 'rc=$?; trap - EXIT INT TERM; log "tearing down"; down || true; exit $rc' EXIT
		trap 'exit 130' INT TERM
	fi
	start=$SECONDS
	up
	run_tests
	log "e2e passed in $((SECONDS - start)) s (setup and tests)"
	;;
*)
	echo "usage: $0 e2e|up|load|install|test|down" >&2
	exit 2
	;;
esac
