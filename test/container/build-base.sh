#!/usr/bin/env bash
# build-base.sh: build, locally and without any container registry, a stand-in for
# Home Assistant's Debian add-on base image (home-assistant/docker-base debian/Dockerfile)
# and a stand-in for the Go builder image the add-on's Dockerfile names. The container
# test (run.sh) builds the add-on's Dockerfile on them with BUILD_FROM=$BASE_IMAGE.
#
#   qnetd-test/ha-base-debian:3.2.3.0   minbase Debian + bash jq tzdata curl ca-certificates
#                                       xz-utils, the REAL s6-overlay 3.2.3.0 built from the
#                                       vendored sources (skarnet packages compiled with Debian's
#                                       gcc, laid out as /package/<cat>/<name>-<version> +
#                                       /command, noarch overlay with @VERSION@/@SHEBANGDIR@
#                                       substituted, /usr/bin symlinks), the real bashio 0.17.5,
#                                       ENTRYPOINT ["/init"] and the base image's ENV.
#   golang:1.26-alpine                  NOT Alpine: minbase Debian + this machine's Go,
#                                       GOFLAGS=-mod=mod, GOPROXY = a file proxy made from this
#                                       machine's module cache, then this machine's GOPROXY.
#
# An image is rebuilt only when its recipe changed: each carries a label with a hash of
# this script and the sources' SHA256SUMS (FORCE=1 rebuilds both). Compiled skarnet
# packages are cached under $HA_BASE_WORK (one stamp per package).
#
# Known differences from the real base (ghcr.io/home-assistant/{arch}-base-debian):
#   * Debian bookworm minbase (the real one is debian:trixie-slim);
#   * skarnet packages linked statically against glibc with Debian's gcc (the real release is
#     static musl from s6-overlay's cross toolchain); s6-networking built without TLS (no
#     BearSSL vendored); no tempio (not vendored); one build stage, not flattened.
#
# Env: HA_BASE_SRC (vendored tarballs, default ../shared/vendor/ha-base-src beside the
# repository), HA_BASE_WORK (build dir), HA_BASE_ROOTFS (a minbase Debian rootfs to copy;
# made with debootstrap when absent), FORCE=1, JOBS.
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-qnetd-test/ha-base-debian:3.2.3.0}
GO_IMAGE=${GO_IMAGE:-golang:1.26-alpine}
MINBASE_IMAGE=qnetd-test/debian-minbase:bookworm
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${HA_BASE_SRC:-$HERE/../../../shared/vendor/ha-base-src}
WORK=${HA_BASE_WORK:-/tmp/qnetd-ha-base}
SUITE=bookworm
ROOTFS=${HA_BASE_ROOTFS:-$WORK/rootfs-$SUITE}
JOBS=${JOBS:-$(nproc)}
FORCE=${FORCE:-0}

S6O_VERSION=3.2.3.0
BASHIO_VERSION=0.17.5
SHEBANGDIR=/command
# name version category options (from s6-overlay 3.2.3.0 conf/versions and mk/skaware.mk)
SKAWARE=(
  "skalibs 2.15.0.0 prog --with-default-path=/command:/usr/bin:/bin --with-sysdep-devurandom=yes --with-sysdep-grndinsecure=no --with-sysdep-posixspawnearlyreturn=no --with-sysdep-procselfexe=/proc/self/exe"
  "execline 2.9.9.0 admin --disable-pedantic-posix --enable-multicall"
  "s6 2.15.0.0 admin"
  "s6-rc 0.6.1.0 admin"
  "s6-linux-init 1.2.0.1 admin"
  "s6-portable-utils 2.3.1.2 admin --enable-multicall"
  "s6-linux-utils 2.6.4.1 admin --enable-multicall"
  "s6-dns 2.4.1.2 web"
  "s6-networking 2.8.0.0 net"
  "s6-overlay-helpers 0.1.2.2 admin"
)
SKAWARE_OPTIONS=(--enable-slashpackage --enable-static-libc --disable-shared)

log() { printf '[build-base] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
# the recipe of an image: this script and the sources it is built from
RECIPE=$(cat "$0" "$SRC/SHA256SUMS" 2>/dev/null | sha256sum | cut -c1-16)
current_image() {  # image recipe: the image exists and was built by that recipe
  [ "$(docker image inspect -f '{{index .Config.Labels "dev.qnetd-test.recipe"}}' "$1" 2>/dev/null)" = "$2" ]
}

mirror() {
  local m
  m=$(grep -rh '^URIs' /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $2}' | grep -m1 '/debian$' || true)
  [ -n "$m" ] || m=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -m1 '/debian$' || true)
  [ -n "$m" ] || die "no Debian mirror in the apt sources"
  echo "$m"
}

docker info >/dev/null 2>&1 || die "docker engine not reachable"
mkdir -p "$WORK"

# ---------------------------------------------------------------- minbase Debian image
ensure_minbase() {
  if have_image "$MINBASE_IMAGE" && [ "$FORCE" != 1 ]; then return; fi
  if [ ! -x "$ROOTFS/bin/bash" ]; then
    ROOTFS=$WORK/rootfs-$SUITE
    if [ ! -x "$ROOTFS/bin/bash" ]; then
      command -v debootstrap >/dev/null || die "no rootfs at $ROOTFS and no debootstrap"
      log "debootstrap --variant=minbase $SUITE from $(mirror)"
      rm -rf "$ROOTFS.tmp"
      debootstrap --variant=minbase "$SUITE" "$ROOTFS.tmp" "$(mirror)" >"$WORK/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $WORK/debootstrap.log"
      mv "$ROOTFS.tmp" "$ROOTFS"
    fi
  fi
  log "importing $ROOTFS as $MINBASE_IMAGE (read only; the rootfs is not modified)"
  tar -C "$ROOTFS" --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -c . \
    | docker import -c 'CMD ["/bin/bash"]' - "$MINBASE_IMAGE" >/dev/null
}

# ---------------------------------------------------------------- skarnet packages
verify_sources() {
  (cd "$SRC" && sha256sum -c --quiet SHA256SUMS) || die "vendored sources fail SHA256SUMS"
}

build_skaware() {
  local stage=$WORK/staging build=$WORK/build
  mkdir -p "$stage" "$build"
  local line name ver cat opts
  for line in "${SKAWARE[@]}"; do
    read -r name ver cat opts <<<"$line"
    if [ -e "$WORK/stamp.$name-$ver" ]; then continue; fi
    log "building $name-$ver (category $cat)"
    rm -rf "$build/$name-$ver"
    tar -C "$build" -xzf "$SRC/$name-$ver.tar.gz"
    [ -d "$build/$name-$ver" ] || die "$name-$ver.tar.gz did not unpack to $name-$ver"
    # shellcheck disable=SC2086
    (
      cd "$build/$name-$ver"
      env DESTDIR="$stage" ./configure "${SKAWARE_OPTIONS[@]}" $opts >"$WORK/$name.configure.log" 2>&1 \
        || { tail -20 "$WORK/$name.configure.log" >&2; exit 1; }
      { make -j"$JOBS" && make strip; } >"$WORK/$name.make.log" 2>&1 \
        || { tail -20 "$WORK/$name.make.log" >&2; exit 1; }
      make -j1 -L install update global-links DESTDIR="$stage" >"$WORK/$name.install.log" 2>&1 \
        || { tail -20 "$WORK/$name.install.log" >&2; exit 1; }
    ) || die "$name-$ver failed (logs in $WORK)"
    touch "$WORK/stamp.$name-$ver"
  done
}

# ---------------------------------------------------------------- s6-overlay tarballs
make_overlay() {
  local out=$WORK/overlay s6o=$WORK/build/s6-overlay-$S6O_VERSION
  rm -rf "$out" && mkdir -p "$out"
  rm -rf "$s6o" && tar -C "$WORK/build" -xzf "$SRC/s6-overlay-$S6O_VERSION.tar.gz"
  [ -d "$s6o/layout/rootfs-overlay" ] || die "s6-overlay tarball has no layout/rootfs-overlay"
  grep -q "^VERSION := $S6O_VERSION\$" "$s6o/conf/defaults.mk" || die "s6-overlay version mismatch"

  # rootfs-overlay-arch: staging/package + staging/command, minus include/ and library/
  local arch=$out/rootfs-overlay-arch
  mkdir -p "$arch"
  cp -a "$WORK/staging/package" "$WORK/staging/command" "$arch/"
  rm -rf "$arch"/package/*/*/include "$arch"/package/*/*/library
  [ -x "$arch/package/admin/execline/command/execlineb" ] || die "execlineb missing from the arch overlay"
  tar -C "$arch" -Jcf "$out/s6-overlay-x86_64.tar.xz" --owner=0 --group=0 --numeric-owner .

  # symlinks-overlay-arch: /usr/bin/X -> ../../command/X
  mkdir -p "$out/symlinks-arch/usr/bin"
  local i
  for i in "$arch"/command/*; do ln -s "../../command/${i##*/}" "$out/symlinks-arch/usr/bin/"; done
  tar -C "$out/symlinks-arch" -Jcf "$out/s6-overlay-symlinks-arch.tar.xz" --owner=0 --group=0 --numeric-owner .

  # rootfs-overlay-noarch, exactly as s6-overlay's Makefile does it
  local tmp=$out/rootfs-overlay-noarch.tmp
  cp -a "$s6o/layout/rootfs-overlay" "$tmp"
  chmod -R go-w "$tmp"    # git archive gives 0775/0664; a release built from a checkout has 0755/0644
  find "$tmp" -type f -name .empty -exec rm -f -- {} +
  find "$tmp" -depth -name '*@VERSION@*' -print | while read -r n; do
    mv -f "$n" "$(dirname "$n")/$(basename "$n" | sed -e "s/@VERSION@/$S6O_VERSION/")"; done
  find "$tmp" -type f -size +0c -exec sed -i -e "s|@SHEBANGDIR@|$SHEBANGDIR|g; s/@VERSION@/$S6O_VERSION/g;" -- {} +
  ln -s "s6-overlay-$S6O_VERSION" "$tmp/package/admin/s6-overlay"
  mv -f "$tmp" "$out/rootfs-overlay-noarch"
  if grep -rl '@VERSION@\|@SHEBANGDIR@' "$out/rootfs-overlay-noarch" >/dev/null; then die "unsubstituted @...@ left"; fi
  tar -C "$out/rootfs-overlay-noarch" -Jcf "$out/s6-overlay-noarch.tar.xz" --owner=0 --group=0 --numeric-owner .

  mkdir -p "$out/symlinks-noarch/usr/bin"
  for i in "$out"/rootfs-overlay-noarch/command/*; do ln -s "../../command/${i##*/}" "$out/symlinks-noarch/usr/bin/"; done
  tar -C "$out/symlinks-noarch" -Jcf "$out/s6-overlay-symlinks-noarch.tar.xz" --owner=0 --group=0 --numeric-owner .
}

# ---------------------------------------------------------------- the base image
build_base_image() {
  local ctx=$WORK/ctx-base
  rm -rf "$ctx" && mkdir -p "$ctx/bashio"
  cp "$WORK"/overlay/*.tar.xz "$ctx/"
  tar -C "$ctx/bashio" --strip-components=1 -xzf "$SRC/bashio-$BASHIO_VERSION.tar.gz"
  [ -x "$ctx/bashio/lib/bashio" ] || [ -f "$ctx/bashio/lib/bashio" ] || die "bashio tarball has no lib/bashio"
  local m; m=$(mirror)
  cat >"$ctx/Dockerfile" <<EOF
# Stand-in for home-assistant/docker-base debian/Dockerfile (see build-base.sh for differences)
FROM $MINBASE_IMAGE

ENV \\
    LANG="C.UTF-8" \\
    DEBIAN_FRONTEND="noninteractive" \\
    CURL_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt" \\
    S6_BEHAVIOUR_IF_STAGE2_FAILS=2 \\
    S6_CMD_WAIT_FOR_SERVICES_MAXTIME=0 \\
    S6_CMD_WAIT_FOR_SERVICES=1 \\
    S6_SERVICES_READYTIME=50

SHELL ["/bin/bash", "-o", "pipefail", "-x", "-c"]

RUN echo "deb $m $SUITE main" > /etc/apt/sources.list \\
    && rm -f /etc/apt/apt.conf.d/docker-clean \\
    && apt-get update && apt-get install -y --no-install-recommends \\
        bash jq tzdata curl ca-certificates xz-utils \\
    && mkdir -p /usr/share/man/man1

# S6-Overlay (local tar.xz: ADD unpacks them)
ADD s6-overlay-noarch.tar.xz /
ADD s6-overlay-symlinks-arch.tar.xz /
ADD s6-overlay-symlinks-noarch.tar.xz /
ADD s6-overlay-x86_64.tar.xz /

# bashio
COPY bashio/lib /usr/lib/bashio
RUN ln -s /usr/lib/bashio/bashio /usr/bin/bashio

# Touch-ups and cleanup
RUN mkdir -p /etc/fix-attrs.d && mkdir -p /etc/services.d \\
    && apt-get clean && rm -rf /var/lib/apt/lists/* \\
    && test -x /init && test -x /command/execlineb && test -L /usr/bin/s6-rc \\
    && test -x /package/admin/s6-overlay/libexec/stage0 \\
    && bash -c 'source /usr/lib/bashio/bashio.sh 2>/dev/null || true; command -v bashio'

ENTRYPOINT ["/init"]
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
LABEL io.hass.type="base" io.hass.base.name="debian" \\
      dev.qnetd-test.standin="s6-overlay $S6O_VERSION (glibc-static, Debian gcc), bashio $BASHIO_VERSION, Debian $SUITE minbase" \\
      dev.qnetd-test.recipe="$RECIPE"
EOF
  log "docker build $BASE_IMAGE"
  DOCKER_BUILDKIT=0 docker build --network host -t "$BASE_IMAGE" "$ctx" >"$WORK/base-image.build.log" 2>&1 \
    || { tail -30 "$WORK/base-image.build.log" >&2; die "base image build failed"; }
}

# ---------------------------------------------------------------- Go builder stand-in
# the Go image's recipe also names the Go it copies
# The module proxy inside is a copy of this machine's module cache: a new
# dependency in the project's go.sum needs a new copy.
go_recipe() { echo "$RECIPE-$(go env GOVERSION 2>/dev/null)-$(sha256sum "$HERE/../../go.sum" 2>/dev/null | cut -c1-16)"; }

build_go_image() {
  local goroot
  goroot=$(go env GOROOT 2>/dev/null || echo /usr/local/go)
  [ -x "$goroot/bin/go" ] || die "no Go toolchain on this machine"
  local ctx=$WORK/ctx-go
  rm -rf "$ctx" && mkdir -p "$ctx/modproxy"
  cp -a "$goroot" "$ctx/go"
  local cache
  cache=$(go env GOMODCACHE 2>/dev/null || true)/cache/download
  if [ -d "$cache" ]; then cp -a "$cache/." "$ctx/modproxy/"; rm -rf "$ctx/modproxy/sumdb"; fi
  cat >"$ctx/Dockerfile" <<EOF
# Stand-in for golang:1.26-alpine (NOT Alpine): Debian minbase + this machine's Go
# ($("$goroot/bin/go" version)). Module downloads: a file proxy made from this machine's module
# cache, then this machine's GOPROXY over the host network.
FROM $MINBASE_IMAGE
COPY go /usr/local/go
COPY modproxy /usr/local/share/go-modproxy
ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    GOPATH=/go GOTOOLCHAIN=local GOFLAGS=-mod=mod \\
    GOPROXY=file:///usr/local/share/go-modproxy,$("$goroot/bin/go" env GOPROXY)
RUN go version
WORKDIR /go
LABEL dev.qnetd-test.standin="golang:1.26-alpine stand-in: Debian $SUITE + host Go" dev.qnetd-test.recipe="$(go_recipe)"
EOF
  log "docker build $GO_IMAGE"
  DOCKER_BUILDKIT=0 docker build --network host -t "$GO_IMAGE" "$ctx" >"$WORK/go-image.build.log" 2>&1 \
    || { tail -30 "$WORK/go-image.build.log" >&2; die "Go image build failed"; }
  rm -rf "$ctx"
}

main() {
  local need_base=1 need_go=1
  if [ "$FORCE" != 1 ]; then
    current_image "$BASE_IMAGE" "$RECIPE" && need_base=0
    current_image "$GO_IMAGE" "$(go_recipe)" && need_go=0
  fi
  if [ $need_base = 0 ] && [ $need_go = 0 ]; then log "images exist: $BASE_IMAGE $GO_IMAGE"; return 0; fi
  ensure_minbase
  if [ $need_base = 1 ]; then
    { command -v gcc && command -v make; } >/dev/null || die "need gcc and make"
    verify_sources
    build_skaware
    make_overlay
    build_base_image
  fi
  [ $need_go = 1 ] && build_go_image
  log "ready: $BASE_IMAGE $GO_IMAGE"
}

main "$@"
