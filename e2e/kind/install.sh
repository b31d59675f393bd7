#!/usr/bin/env bash
# install.sh KUBECONFIG IMAGE: install the operator as users do, from deploy/default
# (kubectl apply -k, server-side), with IMAGE — already in the node — instead of the
# default tag, and wait until it runs and its webhook has a CA bundle. Run again with
# another IMAGE, it upgrades the install in place (TestUpgrade).
#
# The overlay is generated in a temporary directory: deploy/default as its resource,
# the image replaced, and deploy/default's replacements carried again so that the
# sidecar and the Flagd Deployments run IMAGE too (docs/install.md).
set -euo pipefail

kubeconfig=${1:?usage: install.sh KUBECONFIG IMAGE}
image=${2:?usage: install.sh KUBECONFIG IMAGE}
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
kubectl="${FLAGPOLE_E2E_KUBECTL:?FLAGPOLE_E2E_KUBECTL names the kubectl to use}"
namespace="${FLAGPOLE_E2E_OPERATOR_NAMESPACE:-flagpole-system}"
deployment="${FLAGPOLE_E2E_OPERATOR_DEPLOYMENT:-flagpole-operator}"
log() { echo "install: $*" >&2; }

name=${image%:*}
tag=${image##*:}
if [ "$name" = "$image" ] || [[ "$tag" == */* ]]; then
	log "IMAGE must be name:tag, got $image"
	exit 2
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$dir" "$repo/deploy/default")
images:
  - name: ghcr.io/flagpole-dev/flagpole
    newName: $name
    newTag: "$tag"  # quoted: a tag of digits only (a short commit hash can be) is a string
replacements:
  - source:
      kind: Deployment
      name: $deployment
      fieldPath: spec.template.spec.containers.[name=operator].image
    targets:
      - select:
          kind: Deployment
          name: $deployment
        fieldPaths:
          - spec.template.spec.containers.[name=operator].env.[name=FLAGPOLE_SIDECAR_IMAGE].value
          - spec.template.spec.containers.[name=operator].env.[name=FLAGPOLE_IMAGE].value
EOF
k() { "$kubectl" --kubeconfig "$kubeconfig" "$@"; }
log "applying deploy/default with $image"
k apply --server-side --force-conflicts --field-manager flagpole-e2e-install -k "$dir" >&2
k -n "$namespace" rollout status "deployment/$deployment" --timeout 5m >&2
for _ in $(seq 1 240); do
	bundle=$(k get mutatingwebhookconfiguration flagpole-mutating-webhook -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null || true)
	[ -n "$bundle" ] && break
	sleep 0.5
done
[ -n "$bundle" ] || { log "the operator did not write its CA into flagpole-mutating-webhook"; exit 1; }
log "operator $namespace/$deployment runs $image"
