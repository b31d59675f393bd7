#!/usr/bin/env bash
# node-image.sh: print the kind node image for make kind-e2e on stdout, building it
# here if no registry can provide one. Progress goes to stderr.
#
#   1. $KIND_NODE_IMAGE, if set, is used as it is.
#   2. The official kindest/node image of the Kubernetes version pinned in
#      e2e/tools/go.mod, if the engine has it or can pull it ($FLAGPOLE_KIND_PULL=never
#      skips the pull).
#   3. Otherwise a node image built locally without pulling anything, tagged
#      flagpole.local/kind-node:<version>-<content hash> and kept by the engine: it is
#      rebuilt only when one of its inputs (this script, e2e/kind/node/, the pinned
#      modules) changes. The pieces, as kind's own base and node images have them:
#      - a Debian bookworm rootfs from debootstrap (systemd, Debian's containerd and
#        runc, iptables, CNI plugins...), cached as a tarball in the user cache dir;
#      - kind's base files (entrypoint, systemd units, /kind/bin) from the kind module
#        pinned in e2e/kind/tools, read from the Go module cache;
#      - kubeadm, kubelet, kubectl and the control-plane binaries built from
#        k8s.io/kubernetes as pinned in e2e/tools (the same build as the e2e harness's
#        kube-apiserver, so the Go build cache serves both), etcd from e2e/tools/etcd,
#        CoreDNS from e2e/kind/coredns, the sandbox program from e2e/kind/tools/pause;
#      - the images kubeadm asks for (`kubeadm config images list`), each the static
#        binary on an empty filesystem (kube-proxy with Debian's iptables/nft and their
#        libraries), imported into the node's containerd while the image is built (kind
#        reads nothing from /kind/images at create time);
#      - e2e/kind/node/: containerd with restrict_oom_score_adj (this VM's bounding set
#        lacks CAP_SYS_RESOURCE) and a ptp CNI config, since the local image ships no
#        kindnetd (the cluster config disables kind's default CNI).
set -euo pipefail
# the build's Go release, also when run outside make (README, "Go toolchain")
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${FLAGPOLE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flagpole-e2e}"
log() { echo "node-image: $*" >&2; }
export GOWORK=off GOFLAGS="${GOFLAGS:-}"

kube_version=$(cd "$repo/e2e/tools" && go list -m -f '{{.Version}}' k8s.io/kubernetes)

if [ -n "${KIND_NODE_IMAGE:-}" ]; then
	log "using KIND_NODE_IMAGE=$KIND_NODE_IMAGE"
	echo "$KIND_NODE_IMAGE"
	exit 0
fi
official="kindest/node:$kube_version"
if docker image inspect "$official" >/dev/null 2>&1; then
	log "using $official (already in the engine)"
	echo "$official"
	exit 0
fi
if [ "${FLAGPOLE_KIND_PULL:-auto}" != never ]; then
	if timeout 300 docker pull -q "$official" >/dev/null 2>&1; then
		log "pulled $official"
		echo "$official"
		exit 0
	fi
	log "cannot pull $official: building a node image locally"
fi

# The content hash names the image: everything that goes into it except the Debian
# packages, which debootstrap takes from the mirror of the day (the base tarball is
# kept until its own inputs change; delete it from $cache to refresh it).
hash_inputs=(
	"$here/node-image.sh"
	"$here"/node/*
	"$repo/e2e/tools/go.mod" "$repo/e2e/tools/go.sum" "$repo/e2e/tools/etcd/main.go"
	"$here/tools/go.mod" "$here/tools/go.sum" "$here/tools/pause/main.go"
	"$here/coredns/go.mod" "$here/coredns/go.sum"
)
hash=$(cat "${hash_inputs[@]}" | sha256sum | cut -c1-12)
tag="flagpole.local/kind-node:$kube_version-$hash"
if docker image inspect "$tag" >/dev/null 2>&1; then
	log "using $tag (built earlier)"
	echo "$tag"
	exit 0
fi

[ "$(id -u)" = 0 ] || { log "building the node image needs root (debootstrap, containerd)"; exit 1; }
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v containerd >/dev/null || need+=(containerd)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

start=$SECONDS
mkdir -p "$cache"
work=$(mktemp -d "$cache/node-build.XXXXXX")
cpid=""
cleanup() {
	if [ -n "$cpid" ]; then kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; fi
	grep -o " $work/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done || true
	rm -rf "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs" "$work/bin"

# --- binaries -----------------------------------------------------------------
major_minor=${kube_version#v}
major=${major_minor%%.*}
minor=${major_minor#*.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
gobuild() { # dir out-dir packages...
	local dir=$1 out=$2
	shift 2
	(cd "$dir" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out/" "$@")
}
t=$SECONDS
log "building Kubernetes $kube_version (kubeadm, kubelet, kubectl, control plane, kube-proxy), etcd, CoreDNS, pause"
kube_cmds=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
gobuild "$repo/e2e/tools" "$work/bin" "${kube_cmds[@]/#/k8s.io/kubernetes/cmd/}"
gobuild "$repo/e2e/tools" "$work/bin" ./etcd
gobuild "$here/coredns" "$work/bin" github.com/coredns/coredns
gobuild "$here/tools" "$work/bin" ./pause
log "binaries built in $((SECONDS - t)) s"

# --- base rootfs ----------------------------------------------------------------
packages=(
	systemd systemd-sysv dbus
	containerd runc containernetworking-plugins
	iptables nftables conntrack iproute2 ethtool socat kmod util-linux mount
	libseccomp2 pigz fuse-overlayfs e2fsprogs
	bash ca-certificates curl jq procps libc-bin
)
suite=bookworm
mirror="${FLAGPOLE_DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
base_hash=$(printf '%s\n' "$suite" "$mirror" "${packages[@]}" | sha256sum | cut -c1-12)
base_tar="$cache/kind-base-$suite-$base_hash.tar"
if [ ! -s "$base_tar" ]; then
	t=$SECONDS
	log "debootstrap $suite from $mirror (cached as $base_tar)"
	debootstrap --variant=minbase --include="$(
		IFS=,
		echo "${packages[*]}"
	)" "$suite" "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log" >&2
		exit 1
	}
	rm -rf "$work/base/var/cache/apt/archives/"*.deb "$work/base/var/lib/apt/lists/"*
	tar -C "$work/base" --numeric-owner --xattrs -cf "$base_tar.tmp" .
	mv "$base_tar.tmp" "$base_tar"
	rm -rf "$work/base"
	log "base rootfs in $((SECONDS - t)) s"
fi
tar -C "$rootfs" --numeric-owner --xattrs -xf "$base_tar"

# --- kind's base files, as kind's base image lays them out ------------------------
kind_dir=$(cd "$here/tools" && go mod download -json sigs.k8s.io/kind | jq -r .Dir)
files="$kind_dir/images/base/files"
[ -d "$files" ] || { log "no $files in the kind module"; exit 1; }
install -d -m 0755 "$rootfs/kind" "$rootfs/kind/bin" "$rootfs/LICENSES" "$rootfs/etc/kubernetes/manifests"
install -m 0755 "$files"/usr/local/bin/* "$rootfs/usr/local/bin/"
install -m 0644 "$files"/kind/README.txt "$rootfs/kind/"
install -m 0755 "$files"/kind/bin/* "$rootfs/kind/bin/"
install -m 0644 "$files"/LICENSES/* "$rootfs/LICENSES/"
install -m 0644 "$files"/etc/crictl.yaml "$rootfs/etc/"
install -D -m 0644 -t "$rootfs/etc/containerd" "$files"/etc/containerd/*
install -D -m 0644 -t "$rootfs/etc/default" "$files"/etc/default/*
install -D -m 0644 -t "$rootfs/etc/sysctl.d" "$files"/etc/sysctl.d/*
install -D -m 0644 -t "$rootfs/etc/systemd/system" "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice
install -D -m 0644 -t "$rootfs/etc/systemd/system/kubelet.service.d" "$files"/etc/systemd/system/kubelet.service.d/*
# The clean-ups of kind's base Dockerfile: no services but ours, no kmsg in journald.
find "$rootfs/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "$rootfs"/lib/systemd/system/multi-user.target.wants/* "$rootfs"/etc/systemd/system/*.wants/* \
	"$rootfs"/lib/systemd/system/local-fs.target.wants/* "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
	"$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* "$rootfs"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$rootfs/etc/systemd/journald.conf"
ln -sf /usr/lib/systemd/systemd "$rootfs/sbin/init"
systemctl --root="$rootfs" enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
systemctl --root="$rootfs" mask systemd-binfmt.service >/dev/null 2>&1
# Debian's containerd and runc where kind's units and scripts expect them.
for b in containerd containerd-shim-runc-v2 ctr; do ln -sf "/usr/bin/$b" "$rootfs/usr/local/bin/$b"; done
mkdir -p "$rootfs/opt/cni"
ln -sfn /usr/lib/cni "$rootfs/opt/cni/bin"
ctr oci spec |
	jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
	jq 'del(.process.rlimits)' >"$rootfs/etc/containerd/cri-base.json"
# restrict_oom_score_adj: without CAP_SYS_RESOURCE every sandbox fails otherwise.
sed -i 's/^\(\s*restrict_oom_score_adj\s*=\s*\).*/\1true/' "$rootfs/etc/containerd/config.toml"
grep -q 'restrict_oom_score_adj = true' "$rootfs/etc/containerd/config.toml" || { log "containerd config: restrict_oom_score_adj not set"; exit 1; }
install -D -m 0644 "$here/node/10-flagpole-ptp.conflist" "$rootfs/etc/cni/net.d/10-flagpole-ptp.conflist"
install -D -m 0644 "$here/node/default-storage.yaml" "$rootfs/kind/manifests/default-storage.yaml"
install -m 0755 "$work"/bin/{kubeadm,kubelet,kubectl} "$rootfs/usr/bin/"
echo "$kube_version" >"$rootfs/kind/version"

# --- the images kubeadm needs, imported into the node's containerd ---------------
images_dir="$work/images"
mkdir -p "$images_dir"
mkimage() { # name dir entrypoint-json
	local name=$1 dir=$2 entrypoint=$3
	tar -C "$dir" --numeric-owner --owner=0 --group=0 -c . |
		docker import -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
			-c "ENTRYPOINT $entrypoint" - "$name" >/dev/null
}
with_libs() { # dest files... : copies the files and the shared libraries they load from the rootfs
	local dest=$1 f lib
	shift
	for f in "$@"; do
		install -D "$rootfs$f" "$dest$f"
		for lib in $(chroot "$rootfs" ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
			[ -e "$dest$lib" ] || install -D "$rootfs$(chroot "$rootfs" readlink -f "$lib")" "$dest$lib"
		done
	done
}
sandbox=$(sed -n 's/^\s*sandbox_image\s*=\s*"\(.*\)"/\1/p' "$rootfs/etc/containerd/config.toml")
mapfile -t wanted < <("$work/bin/kubeadm" config images list --kubernetes-version "$kube_version" 2>/dev/null)
[ ${#wanted[@]} -ge 6 ] || { log "kubeadm config images list gave: ${wanted[*]}"; exit 1; }
coredns_version=$(cd "$here/coredns" && go list -m -f '{{.Version}}' github.com/coredns/coredns)
names=()
for image in "${wanted[@]}" "$sandbox"; do
	component=${image##*/}
	component=${component%%:*}
	d="$work/img-$component"
	rm -rf "$d"
	mkdir -p "$d/usr/local/bin" "$d/tmp" "$d/etc"
	case "$component" in
	kube-apiserver | kube-controller-manager | kube-scheduler)
		install -m 0755 "$work/bin/$component" "$d/usr/local/bin/"
		mkimage "$image" "$d" "[\"/usr/local/bin/$component\"]"
		;;
	kube-proxy)
		install -m 0755 "$work/bin/kube-proxy" "$d/usr/local/bin/"
		# iptables (nft backend) with its extensions, which load libraries of their own.
		with_libs "$d" /usr/sbin/xtables-nft-multi /usr/sbin/nft /usr/sbin/conntrack \
			$(cd "$rootfs" && find usr/lib/x86_64-linux-gnu/xtables -name '*.so' -printf '/%p\n')
		for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore \
			iptables-nft iptables-nft-save iptables-nft-restore ip6tables-nft ip6tables-nft-save ip6tables-nft-restore; do
			ln -sf xtables-nft-multi "$d/usr/sbin/$t"
		done
		mkimage "$image" "$d" '["/usr/local/bin/kube-proxy"]'
		;;
	etcd)
		install -m 0755 "$work/bin/etcd" "$d/usr/local/bin/"
		mkimage "$image" "$d" '["/usr/local/bin/etcd"]'
		;;
	coredns)
		[ "${image##*:}" = "$coredns_version" ] || log "note: kubeadm asks for CoreDNS ${image##*:}, e2e/kind/coredns pins $coredns_version"
		install -m 0755 "$work/bin/coredns" "$d/coredns"
		mkimage "$image" "$d" '["/coredns"]'
		;;
	pause)
		install -m 0755 "$work/bin/pause" "$d/pause"
		mkimage "$image" "$d" '["/pause"]'
		;;
	*)
		log "no recipe for image $image"
		exit 1
		;;
	esac
	names+=("$image")
done
docker save -o "$work/images.tar" "${names[@]}"
docker rmi "${names[@]}" >/dev/null

mkdir -p "$work/cstate"
cat >"$work/containerd.toml" <<EOF
version = 2
root = "$rootfs/var/lib/containerd"
state = "$work/cstate"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
EOF
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
cpid=$!
for _ in $(seq 1 60); do
	ctr --address "$work/containerd.sock" version >/dev/null 2>&1 && break
	sleep 0.5
done
ctr --address "$work/containerd.sock" --namespace=k8s.io images import --all-platforms --no-unpack --digests "$work/images.tar" >&2
ctr --address "$work/containerd.sock" --namespace=k8s.io images ls -q >"$work/imported"
for image in "${names[@]}"; do
	grep -qx "$image" "$work/imported" || grep -qx "docker.io/$image" "$work/imported" || {
		log "$image missing from the node's containerd after import"
		exit 1
	}
done
kill "$cpid"
wait "$cpid" 2>/dev/null || true
cpid=""
rm -rf "$rootfs/var/lib/containerd/tmpmounts" "$rootfs/var/lib/containerd/io.containerd.runtime."*

# --- the image ---------------------------------------------------------------------
tar -C "$rootfs" --numeric-owner --xattrs -c . | docker import - "$tag-rootfs" >/dev/null
mkdir -p "$work/ctx"
cat >"$work/ctx/Dockerfile" <<EOF
FROM $tag-rootfs
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$work/ctx" >/dev/null
docker rmi "$tag-rootfs" >/dev/null 2>&1 || true
# Node images of earlier inputs are dropped: only the current one is kept.
for old in $(docker images flagpole.local/kind-node --format '{{.Repository}}:{{.Tag}}'); do
	[ "$old" = "$tag" ] || docker rmi "$old" >/dev/null 2>&1 || true
done
log "built $tag in $((SECONDS - start)) s"
echo "$tag"
