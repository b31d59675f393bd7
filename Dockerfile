# flagpole's image for those who prefer a Dockerfile. It packages the same file tree
# as `make image` (which needs no Docker engine; docs/install.md, "The image"): run
#
#   make image                         # stages bin/image/rootfs/linux_<arch>/
#   docker build --build-arg TARGETARCH=amd64 $(hack/image/docker-build-args.sh) -t flagpole:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 $(hack/image/docker-build-args.sh) -t ... .
#
# `make image-verify IMAGE_DOCKER=1` builds it with a real engine and checks that it
# holds the same files and config as the image built without one.
FROM scratch
ARG TARGETARCH=amd64
# the static binary, the CA certificates, /etc/passwd and /etc/group: all root's
COPY bin/image/rootfs/linux_${TARGETARCH}/ /
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://github.com/flagpole-dev/flagpole
LABEL org.opencontainers.image.title="flagpole" \
      org.opencontainers.image.description="The OpenFeature Operator and flagd in one binary: operator, injected sidecar, standalone flagd" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.created="${CREATED}"
# numeric, so that runAsNonRoot can check it; OpenShift replaces it with a UID of the
# namespace's range, which works as well (nothing in the image is the user's)
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/flagpole"]
