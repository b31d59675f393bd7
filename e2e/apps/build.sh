#!/usr/bin/env bash
# build.sh: pack the OpenFeature SDK test apps (app.js, flagserver.js) into an image
# without pulling a base image, and print the path of its docker-save archive (for
# `kind load image-archive`). Progress goes to stderr.
#
# The image holds this machine's node binary and the shared libraries it loads, and
# node_modules installed by `npm ci` from package-lock.json (the npm registry, or
# npm's cache) — nothing else. It runs as 65532:65532. Tagged
# flagpole.local/e2e-apps:<content hash> and cached as
# <user cache>/flagpole-e2e/e2e-apps-<hash>.tar: rebuilt only when the apps, the
# lock file, this script or the node binary change.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${FLAGPOLE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flagpole-e2e}"
log() { echo "e2e-apps: $*" >&2; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	[ "$(id -u)" = 0 ] || { log "node and npm are needed (apt-get install nodejs npm)"; exit 1; }
	log "installing nodejs and npm"
	apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >&2
fi
node_bin=$(readlink -f "$(command -v node)")

hash=$(cat "$here/build.sh" "$here/package.json" "$here/package-lock.json" "$here"/*.js "$node_bin" | sha256sum | cut -c1-12)
tag="flagpole.local/e2e-apps:$hash"
archive="$cache/e2e-apps-$hash.tar"
if [ -s "$archive" ]; then
	log "using $archive ($tag)"
	echo "$archive"
	exit 0
fi

start=$SECONDS
mkdir -p "$cache"
work=$(mktemp -d "$cache/apps-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/app" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
cp "$here/package.json" "$here/package-lock.json" "$here"/*.js "$root/app/"
log "npm ci ($(node --version), npm $(npm --version))"
(cd "$root/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

install -D -m 0755 "$node_bin" "$root/usr/bin/node"
for lib in $(ldd "$node_bin" | grep -o '/[^ ]*'); do
	install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
echo 'app:x:65532:65532:app:/app:/usr/sbin/nologin' >"$root/etc/passwd"
echo 'app:x:65532:' >"$root/etc/group"

tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
	docker import -c 'ENV PATH=/usr/bin' -c 'ENV NODE_ENV=production' -c 'WORKDIR /app' -c 'USER 65532:65532' \
		-c 'ENTRYPOINT ["/usr/bin/node"]' -c 'CMD ["/app/app.js"]' - "$tag" >/dev/null
docker save -o "$archive.tmp" "$tag"
mv "$archive.tmp" "$archive"
for old in "$cache"/e2e-apps-*.tar; do [ "$old" = "$archive" ] || rm -f "$old"; done
docker rmi "$tag" >/dev/null 2>&1 || true
log "built $tag in $((SECONDS - start)) s ($(du -h "$archive" | cut -f1))"
echo "$archive"
