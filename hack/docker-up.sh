#!/usr/bin/env bash
# docker-up.sh: make a Docker engine available to the kind e2e (make kind-e2e).
#
# If an engine already answers (DOCKER_HOST, or the default socket), it is used as it
# is and nothing is started. Otherwise Debian's docker.io engine is installed if
# missing (apt-get, root only) and dockerd is started with state of its own:
#
#   socket, exec-root, pid file   $FLAGPOLE_DOCKER_RUN   (default /run/flagpole-docker)
#   data-root (images persist)    $FLAGPOLE_DOCKER_DATA  (default <user cache>/flagpole-e2e/docker)
#
# It keeps off the host's network setup (--iptables=false --ip-forward=false
# --bridge=none; kind makes its own bridge network). Where the capability bounding
# set lacks CAP_SYS_RESOURCE (which `docker run --privileged` asks for, and kind runs
# its nodes privileged), dockerd's default runtime is hack/docker-runc.sh, which drops
# that capability from the OCI spec before calling runc.
#
# Prints one line for the caller to eval: `export DOCKER_HOST=...` (empty when the
# engine was already there). hack/docker-down.sh stops only an engine this script
# started (the marker file "started" in $FLAGPOLE_DOCKER_RUN).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
run_dir="${FLAGPOLE_DOCKER_RUN:-/run/flagpole-docker}"
cache_root="${FLAGPOLE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flagpole-e2e}"
data_dir="${FLAGPOLE_DOCKER_DATA:-$cache_root/docker}"
sock="$run_dir/docker.sock"

log() { echo "docker-up: $*" >&2; }

# answers reports whether a Docker engine responds at the current DOCKER_HOST.
answers() { command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; }

if answers; then
	log "using the running engine (${DOCKER_HOST:-default socket})"
	echo ":"
	exit 0
fi
if [ -S "$sock" ] && DOCKER_HOST="unix://$sock" answers; then
	log "using the engine started earlier at $sock"
	echo "export DOCKER_HOST=unix://$sock"
	exit 0
fi

if ! command -v dockerd >/dev/null; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		log "no Docker engine is running and dockerd is not installed; install Docker (or Debian's docker.io) and retry"
		exit 1
	fi
	log "installing Debian's docker.io"
	apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io jq >&2
fi
if [ "$(id -u)" != 0 ]; then
	log "no Docker engine is running and starting dockerd needs root"
	exit 1
fi

mkdir -p "$run_dir" "$data_dir"
args=(
	--data-root "$data_dir"
	--exec-root "$run_dir/exec"
	--pidfile "$run_dir/dockerd.pid"
	-H "unix://$sock"
	--iptables=false --ip6tables=false --ip-forward=false --bridge=none
	--userland-proxy=true
	--log-level warn
)

# CAP_SYS_RESOURCE is capability 24; "privileged" asks for every capability docker knows.
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (( (16#$capbnd >> 24 & 1) == 0 )); then
	command -v jq >/dev/null || { log "jq is needed by the runtime wrapper (apt-get install jq)"; exit 1; }
	log "the capability bounding set lacks CAP_SYS_RESOURCE: privileged containers run through hack/docker-runc.sh"
	args+=(--add-runtime "flagpole-runc=$here/docker-runc.sh" --default-runtime flagpole-runc)
fi

log "starting dockerd (socket $sock, data $data_dir)"
: >"$run_dir/started"
nohup dockerd "${args[@]}" >"$run_dir/dockerd.log" 2>&1 &
for _ in $(seq 1 120); do
	if DOCKER_HOST="unix://$sock" answers; then
		log "engine ready"
		echo "export DOCKER_HOST=unix://$sock"
		exit 0
	fi
	if ! kill -0 $! 2>/dev/null; then
		break
	fi
	sleep 0.5
done
log "dockerd did not become ready; its log:"
tail -n 30 "$run_dir/dockerd.log" >&2 || true
FLAGPOLE_DOCKER_RUN="$run_dir" "$here/docker-down.sh" >&2 || true
exit 1
