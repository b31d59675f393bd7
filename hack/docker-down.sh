#!/usr/bin/env bash
# docker-down.sh: stop the Docker engine hack/docker-up.sh started (and only that one:
# the marker file "started" in $FLAGPOLE_DOCKER_RUN, default /run/flagpole-docker).
# The data-root (cached images) stays; the socket, exec-root and pid file go.
set -euo pipefail

run_dir="${FLAGPOLE_DOCKER_RUN:-/run/flagpole-docker}"
log() { echo "docker-down: $*" >&2; }

if [ ! -e "$run_dir/started" ]; then
	log "no engine started by docker-up.sh at $run_dir: nothing to stop"
	exit 0
fi

# stop_pid stops the process whose pid is in file $1 if its command line names $2:
# SIGTERM, then SIGKILL after 30 s.
stop_pid() {
	local pid=""
	[ -s "$1" ] && pid=$(cat "$1")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null || return 0
	log "stopping $2 (pid $pid)"
	kill -TERM "$pid"
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	log "$2 did not stop in 30 s: killing it"
	kill -KILL "$pid" 2>/dev/null || true
	sleep 1
}

stop_pid "$run_dir/dockerd.pid" dockerd
# The engine's own containerd stops with dockerd; if dockerd had to be killed, it is
# stopped through its pid file.
stop_pid "$run_dir/exec/containerd/containerd.pid" containerd
# Mounts under the exec-root (network namespaces, shm) are released before removing it.
grep -o " $run_dir/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done || true
rm -rf "$run_dir"
log "stopped"
