# The Supervisor passes BUILD_FROM and BUILD_ARCH (build.yaml keeps the same base images).
ARG BUILD_FROM=ghcr.io/home-assistant/amd64-base:3.22

# --- build: one static binary, cross-compiled on the build machine's platform
FROM --platform=$BUILDPLATFORM golang:1.26-alpine AS build
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
RUN ln -s qnetd /usr/bin/corosync-qnetd \
 && ln -s qnetd /usr/bin/corosync-qnetd-tool \
 && ln -s qnetd /usr/bin/corosync-qnetd-certutil \
 && addgroup -S coroqnetd && adduser -S -D -H -h /data -s /sbin/nologin -G coroqnetd coroqnetd
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
