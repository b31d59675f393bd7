#!/usr/bin/env bash
# run.sh: the kind e2e (make kind-e2e, kind-up, kind-down). See e2e/README.md.
#
#   run.sh e2e    up, then the e2e suite against the cluster, then down (always,
#                 also after a failure or Ctrl-C; FLAGPOLE_KIND_KEEP=1 keeps it all)
#   run.sh up     Docker engine (hack/docker-up.sh), node image (node-image.sh),
#                 cluster from e2e/kind/, flagpole and test-app images loaded,
#                 operator installed from deploy/default; prints how to use it
#   run.sh test   the e2e suite against a cluster `up` made
#   run.sh down   delete the cluster and what was made for it: the kind network, the
#                 /lib/modules mount point kind made, the engine docker-up started
#
# State (kubeconfig, what was created) lives in $FLAGPOLE_KIND_STATE (default
# <user cache>/flagpole-e2e/kind-<cluster>); the kubeconfig is <state>/kubeconfig.
set -euo pipefail

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

# image_archive prints the docker-loadable archive of the flagpole image under test.
image_archive() {
	if [ -n "${FLAGPOLE_IMAGE_ARCHIVE:-}" ]; then
		echo "$FLAGPOLE_IMAGE_ARCHIVE"
		return
	fi
	make -C "$repo" -s image >&2
	make -C "$repo" -s --no-print-directory image-archive-path
}

# archive_tag prints the first repo:tag of a docker-save archive.
archive_tag() { tar -xOf "$1" manifest.json | jq -r '.[0].RepoTags[0]'; }

up() {
	local kind node_image config archive apps image apps_image
	mkdir -p "$state"
	engine
	phase "engine ready"
	kind=$(kind_bin)
	node_image=$("$here/node-image.sh")
	phase "node image $node_image"
	archive=$(image_archive)
	image=$(archive_tag "$archive")
	apps=$("$repo/e2e/apps/build.sh")
	apps_image=$(archive_tag "$apps")
	phase "images $image, $apps_image"

	config="$here/cluster.yaml"
	case "$node_image" in flagpole.local/*) config="$here/cluster-local-node.yaml" ;; esac
	if docker network inspect kind >/dev/null 2>&1; then rm -f "$state/network-created"; else : >"$state/network-created"; fi
	if [ -e /lib/modules ]; then rm -f "$state/lib-modules-created"; else : >"$state/lib-modules-created"; fi
	if "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
		log "cluster $cluster exists: deleting it first"
		"$kind" delete cluster --name "$cluster" >&2
	fi
	"$kind" create cluster --name "$cluster" --image "$node_image" --config "$config" \
		--kubeconfig "$kubeconfig" --wait 3m >&2
	phase "cluster $cluster created"
	"$kind" load image-archive --name "$cluster" "$archive" >&2
	"$kind" load image-archive --name "$cluster" "$apps" >&2
	{
		echo "FLAGPOLE_E2E_IMAGE=$image"
		echo "FLAGPOLE_E2E_APPS_IMAGE=$apps_image"
		echo "FLAGPOLE_E2E_KUBECTL=$(kubectl_bin)"
		echo "FLAGPOLE_E2E_NODE_IMAGE=$node_image"
	} >"$state/env"
	phase "images loaded"
	"$repo/e2e/kind/install.sh" "$kubeconfig" "$image" >&2
	phase "operator installed"
	log "cluster $cluster is up: KUBECONFIG=$kubeconfig (run.sh test, run.sh down)"
}

run_tests() {
	local env
	[ -s "$kubeconfig" ] || { log "no cluster: run.sh up first"; exit 1; }
	eval "$(cat "$state/docker-env")"
	set -a
	# shellcheck disable=SC1091
	. "$state/env"
	set +a
	cd "$repo/e2e"
	FLAGPOLE_E2E_EXISTING_CLUSTER=true FLAGPOLE_E2E_KIND=true KUBECONFIG="$kubeconfig" \
		go test -count=1 -p 1 -timeout "${FLAGPOLE_KIND_TIMEOUT:-40m}" ${FLAGPOLE_KIND_TESTFLAGS:--v} ./...
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
	echo "usage: $0 e2e|up|test|down" >&2
	exit 2
	;;
esac
