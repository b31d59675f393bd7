#!/usr/bin/env bash
# Checks the image with a real Docker engine (make image-verify IMAGE_DOCKER=1; CI):
#   1. starts dockerd (Debian's docker.io) of its own: own data and exec roots and
#      socket, no iptables, no bridge, so the host's network is left alone;
#   2. loads the archive `make image` wrote (docker load), runs `version` in it as the
#      image's user, and checks that there is no shell to run;
#   3. builds the Dockerfile with that engine (FROM scratch: nothing to pull) and
#      checks, with hack/image "same", that it holds the same files and config as the
#      image assembled without Docker;
#   4. stops dockerd and removes everything it wrote.
# Needs root and dockerd (apt-get install docker.io). Usage: docker-verify.sh [bin/image]
set -euo pipefail
# the build's Go release, also when run outside make (README, "Go toolchain")
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
cd "$(dirname "$0")/../.."
dir="${1:-bin/image}"
tool=bin/tools/image
command -v dockerd >/dev/null || { echo "docker-verify: no dockerd (apt-get install docker.io)" >&2; exit 1; }
docker=/usr/bin/docker
[ -x "$docker" ] || docker=$(command -v docker)
[ "$(id -u)" = 0 ] || { echo "docker-verify: dockerd needs root" >&2; exit 1; }

root=$(mktemp -d /tmp/flagpole-docker-verify.XXXXXX)
sock="$root/docker.sock"
export DOCKER_HOST="unix://$sock" DOCKER_CONFIG="$root/config"
dockerd_pid=
cleanup() {
  set +e
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$dockerd_pid" 2>/dev/null || true
  fi
  # dockerd mounts below its roots; unmount before removing
  grep -o " $root[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT

dockerd --data-root "$root/data" --exec-root "$root/exec" --pidfile "$root/dockerd.pid" \
  -H "unix://$sock" --iptables=false --ip6tables=false --bridge=none \
  --containerd-namespace flagpole-verify --containerd-plugins-namespace flagpole-verify-plugins \
  >"$root/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 300); do
  "$docker" version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || { echo "dockerd exited:" >&2; tail -30 "$root/dockerd.log" >&2; exit 1; }
  sleep 0.1
done
"$docker" version --format 'docker engine {{.Server.Version}}' || { tail -30 "$root/dockerd.log" >&2; exit 1; }

archive=$(sed -n 's/^  "archive": "\(.*\)",*$/\1/p' "$dir/image.json")
tag=$(sed -n 's/^  "tag": "\(.*\)",*$/\1/p' "$dir/image.json")
version=$(sed -n 's/^  "version": "\(.*\)",*$/\1/p' "$dir/image.json")
[ -n "$archive" ] || { echo "docker-verify: no archive of this architecture in $dir/image.json" >&2; exit 1; }

echo "== docker load -i $dir/$archive"
"$docker" load -i "$dir/$archive"
out=$("$docker" run --rm --network none "$tag" version)
echo "$out"
case "$out" in "flagpole $version "*) echo "ok  docker run $tag version";; *) echo "FAIL: want flagpole $version" >&2; exit 1;; esac
user=$("$docker" image inspect --format '{{.Config.User}}' "$tag")
[ "$user" = "65532:65532" ] || { echo "FAIL: image user $user" >&2; exit 1; }
if "$docker" run --rm --network none --entrypoint /bin/sh "$tag" -c true >/dev/null 2>&1; then
  echo "FAIL: the image has a shell" >&2; exit 1
fi
echo "ok  no shell in the image; user $user"

echo "== docker build (Dockerfile, legacy builder, FROM scratch)"
# shellcheck disable=SC2046
DOCKER_BUILDKIT=0 "$docker" build -q --build-arg TARGETARCH="$(go env GOARCH)" $(hack/image/docker-build-args.sh "$dir") \
  -t flagpole-dockerfile:verify .
"$docker" save -o "$root/dockerfile.tar" flagpole-dockerfile:verify
"$tool" same -dir "$dir" -arch "$(go env GOARCH)" -archive "$root/dockerfile.tar" -tag flagpole-dockerfile:verify
out=$("$docker" run --rm --network none flagpole-dockerfile:verify version)
case "$out" in "flagpole $version "*) echo "ok  the Dockerfile's image runs: $out";; *) echo "FAIL: $out" >&2; exit 1;; esac
