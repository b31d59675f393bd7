#!/usr/bin/env bash
# Prints the --build-arg flags that give the Dockerfile's image the labels of
# `make image`'s (version, commit, commit time, source), read from the last build's
# bin/image/image.json and the git checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-bin/image}"
version=$(sed -n 's/^  "version": "\(.*\)",*$/\1/p' "$dir/image.json")
revision=$(sed -n 's/^  "revision": "\(.*\)",*$/\1/p' "$dir/image.json")
created=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}" +%Y-%m-%dT%H:%M:%SZ)
echo "--build-arg VERSION=$version --build-arg REVISION=$revision --build-arg CREATED=$created"
