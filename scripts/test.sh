#!/usr/bin/env bash
# Every test of the project, as CI runs it (as root, on a fresh clone):
#   1. install what the tests need (Debian packages, Go modules);
#   2. go vet, and go test -race over every package (this includes the
#      differential test against Debian's corosync-qnetd);
#   3. the randomized safety test with SAFETY_SEQUENCES sequences;
#   4. the real-peer scenarios (real corosync + corosync-qdevice nodes in
#      network namespaces) against ours, in TLS modes REALPEER_TLS_MODES;
#      ours must pass every scenario that passes with Debian's
#      corosync-qnetd (its stored results; REALPEER_UPSTREAM=1 runs it live
#      in the same run);
#   5. the container test: the add-on's image built from the Dockerfile on a
#      Home Assistant base built from source, booted under s6-overlay in a
#      Docker engine and paired with real nodes (test/container/README.md).
# Set REALPEER=0 to skip step 4 on a machine without namespaces, CONTAINER=0
# to skip step 5.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

SAFETY_SEQUENCES=${SAFETY_SEQUENCES:-1000000}
REALPEER=${REALPEER:-1}
REALPEER_UPSTREAM=${REALPEER_UPSTREAM:-0}
CONTAINER=${CONTAINER:-1}
REALPEER_TLS_MODES=${REALPEER_TLS_MODES:-off on required}
REALPEER_DIR=${REALPEER_DIR:-$top/test/realpeer}
OUT=${TEST_OUT:-$top/.test-out}
mkdir -p "$OUT"

step() { printf '\n=== %s\n' "$*"; }

step "install"
need_root_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "not root: skipping package installation; missing packages make tests fail" >&2
        return 1
    fi
}
pkgs=(gcc libc6-dev make chromium bubblewrap execline shellcheck apparmor openssh-client sshpass libnss3-tools mosquitto mosquitto-clients crmsh pcs)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && need_root_install; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# corosync, corosync-qdevice, corosync-qnetd (the reference), NSS tools,
# nftables, iproute2: the rig's own installer, with services kept stopped.
if need_root_install; then bash "$REALPEER_DIR/setup.sh"; fi
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
go version
go mod download

step "build"
make build

step "go vet"
go vet ./...

step "go test -race ./..."
QNETD_REQUIRE_UPSTREAM=1 go test -race -count=1 ./... 2>&1 | tee "$OUT/go-test.txt"

step "safety: $SAFETY_SEQUENCES random sequences"
go test -count=1 -run 'TestSafetyRandomized$' ./qnetd/engine -v -timeout 60m \
    -safety.sequences="$SAFETY_SEQUENCES" 2>&1 | tee "$OUT/safety.txt" | grep -E 'sequences|^(ok|FAIL|---)'

if [ "$REALPEER" = 1 ]; then
    rig_env=(RIG_PREFIX=qtr RIG_STATE="${TMPDIR:-/tmp}/qnetd-test-rig" RIG_NET=10.96.0)
    ipc="-S lock_file={RUNDIR}/corosync-qnetd.pid,local_socket_file={RUNDIR}/corosync-qnetd.sock"
    # Debian's corosync-qnetd gives the same verdicts every run: its results
    # in the default modes are stored (test/realpeer/upstream-3.0.3.tsv) and
    # ours are compared with them. REALPEER_UPSTREAM=1 runs it live again
    # (as does any other choice of modes); it takes about 20 minutes.
    stored=$top/test/realpeer/upstream-3.0.3.tsv
    if [ "$REALPEER_UPSTREAM" != 1 ] && [ "$REALPEER_TLS_MODES" = "off on required" ] && [ -f "$stored" ]; then
        step "real peers: Debian corosync-qnetd, stored results ($stored; REALPEER_UPSTREAM=1 runs it live)"
        cp "$stored" "$OUT/realpeer-upstream.tsv"
    else
        step "real peers: Debian corosync-qnetd, tls modes: $REALPEER_TLS_MODES"
        env "${rig_env[@]}" "$REALPEER_DIR/scenarios.sh" --tls-modes "$REALPEER_TLS_MODES" \
            --results "$OUT/realpeer-upstream.tsv" | tee "$OUT/realpeer-upstream.txt" || true
    fi
    step "real peers: ours (and our certutil), tls modes: $REALPEER_TLS_MODES"
    env "${rig_env[@]}" "$REALPEER_DIR/scenarios.sh" --tls-modes "$REALPEER_TLS_MODES" \
        --results "$OUT/realpeer-ours.tsv" \
        --qnetd-certutil "$top/bin/qnetd corosync-qnetd-certutil" \
        --qnetd-cmd "$top/bin/qnetd corosync-qnetd -f -d -l {ADDR} -p {PORT} -s {TLS} $ipc,nss_db_dir={CERTDIR}" \
        | tee "$OUT/realpeer-ours.txt" || true
    step "real peers: pvecm's pairing steps over SSH to our pairing endpoint, then real nodes with TLS"
    env RIG_PREFIX=qtp RIG_STATE="${TMPDIR:-/tmp}/qnetd-test-pairing-rig" RIG_NET=10.94.0 \
        "$REALPEER_DIR/scenarios.sh" --tls-modes on --only 'up2 a' \
        --results "$OUT/realpeer-pairing.tsv" \
        --qnetd-certutil "$top/test/pairing/certutil-over-ssh.sh $top/bin/qnetd" \
        --qnetd-cmd "$top/bin/qnetd corosync-qnetd -f -d -l {ADDR} -p {PORT} -s {TLS} $ipc,nss_db_dir={CERTDIR}" \
        | tee "$OUT/realpeer-pairing.txt"
    step "real peers: ours vs upstream"
    go run ./scripts/realpeercmp "$OUT/realpeer-upstream.tsv" "$OUT/realpeer-ours.tsv"
fi

if [ "$CONTAINER" = 1 ]; then
    step "container: the add-on's image on a Home Assistant base, booted, paired with real nodes"
    TEST_OUT="$OUT" test/container/run.sh
fi
