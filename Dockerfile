# The Supervisor passes BUILD_FROM and BUILD_ARCH (build.yaml keeps the same base images).
ARG BUILD_FROM=ghcr.io/home-assistant/amd64-base:3.22

# --- build: one static binary for BUILD_ARCH. No "--platform=$BUILDPLATFORM":
# that needs BuildKit, and the Supervisor's local builds may use the classic
# builder; the builder image then matches the machine that builds.
FROM golang:1.26-alpine AS build
ARG BUILD_ARCH=amd64
ARG BUILD_VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY qnetd ./qnetd
RUN case "${BUILD_ARCH}" in \
      aarch64) export GOARCH=arm64 ;; \
      amd64) export GOARCH=amd64 ;; \
      *) echo "unsupported BUILD_ARCH ${BUILD_ARCH}" >&2; exit 1 ;; \
    esac \
 && CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/qnetd-addon/qnetd/internal/version.AddOn=${BUILD_VERSION}" \
      -o /out/qnetd ./cmd/qnetd

# --- the add-on
FROM ${BUILD_FROM}
ARG BUILD_ARCH=amd64
ARG BUILD_VERSION=dev
ARG CORE_VERSION=3.0.3

COPY --from=build /out/qnetd /usr/bin/qnetd
# The daemon's user, written into the user database directly: Alpine's
# adduser and Debian's useradd take different options, and the image must
# build on both bases (build.yaml and the container test's Debian base,
# test/container/README.md). A fixed id keeps /data's owner the same across
# image updates; the build stops if another account already uses it.
RUN ln -s qnetd /usr/bin/corosync-qnetd \
 && ln -s qnetd /usr/bin/corosync-qnetd-tool \
 && ln -s qnetd /usr/bin/corosync-qnetd-certutil \
 && if ! grep -q '^coroqnetd:' /etc/passwd; then \
      if cut -d: -f3 /etc/passwd | grep -qx 5403 || cut -d: -f3 /etc/group | grep -qx 5403; then \
        echo "uid or gid 5403 is taken" >&2; exit 1; \
      fi; \
      echo 'coroqnetd:x:5403:' >> /etc/group; \
      echo 'coroqnetd:x:5403:5403:corosync-qnetd:/data:/sbin/nologin' >> /etc/passwd; \
    fi
COPY rootfs /

HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/usr/bin/qnetd", "addon", "healthcheck"]

LABEL \
  io.hass.name="Corosync QNetd" \
  io.hass.description="corosync-qnetd quorum device for Proxmox VE clusters" \
  io.hass.type="addon" \
  io.hass.arch="${BUILD_ARCH}" \
  io.hass.version="${BUILD_VERSION}" \
  org.opencontainers.image.title="Corosync QNetd" \
  org.opencontainers.image.version="${BUILD_VERSION}" \
  org.opencontainers.image.source="https://github.com/qnetd-addon/qnetd" \
  org.opencontainers.image.licenses="MIT" \
  dev.qnetd.core-version="${CORE_VERSION}"
