#!/bin/bash
# run.sh: the add-on's container test (make test runs it; root).
#
#   1. a Docker engine: Debian's docker.io, started here without a bridge
#      (only if none runs; stopped again by its pid);
#   2. the base: build-base.sh builds a stand-in for Home Assistant's Debian
#      add-on base (real s6-overlay 3.2.3.0 and bashio 0.17.5 from source)
#      and for the Go builder image; both stay in the engine, so a later run
#      reuses them while their recipe is unchanged;
#   3. the add-on's image from the repository's Dockerfile, BUILD_FROM=base;
#   4. the scenarios, each container run as the Supervisor runs an add-on
#      (lib.sh, ct_run):
#      bad    a bad options.json stops the container (non-zero exit), the log
#             names the option, nothing is created in /data;
#      taken  host network, the qnetd port already taken: the daemon cannot
#             start and the container stops with its exit code (3);
#      boot   s6-overlay's /init as PID 1 starts the oneshot and the longrun,
#             the daemon runs unprivileged, Docker's health turns healthy,
#             corosync-qnetd-tool -s answers through docker exec;
#      die    a daemon killed is restarted by s6, the container keeps running;
#      wedge  a daemon that stops answering turns the container unhealthy,
#             and healthy again when it answers;
#      peers  realpeer.sh: real corosync + corosync-qdevice nodes pair over
#             pvecm's SSH steps, vote through a split, and keep working over
#             a restart that keeps the CA, host keys and installed keys;
#      crmsh  crmsh.sh: crmsh's own qdevice steps pair a new container over
#             SSH (sandboxed shell), real nodes vote through a split;
#      stop   docker stop exits 0 within config.yaml's timeout;
#      pcs    pcs.sh: the real pcs host auth and pcs quorum device add pair
#             a new container with only the pcs endpoint on, real nodes
#             vote through a split.
# CT_ONLY="main crmsh pcs" (any of them) runs only those parts after the
# images: main is bad to peers and stop (they share the add-on's
# container), crmsh and pcs each start their own.
#
# Output: $TEST_OUT/container (default .test-out/container): verdicts.txt,
# report.md (boot log, health history, pairing and vote results, image
# size), the containers' logs. Exit status 0 only when every verdict passed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$HERE/../.." && pwd)
export CT_OUT=${TEST_OUT:-$top/.test-out}/container
rm -rf "$CT_OUT"
mkdir -p "$CT_OUT"
CT_WORK=$(mktemp -d "${TMPDIR:-/tmp}/qnetd-container-test.XXXXXX")
export CT_WORK
export CT_IMAGE=qnetd-test/addon:container-test
CT_TOKEN=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
export CT_TOKEN
BASE_IMAGE=qnetd-test/ha-base-debian:3.2.3.0
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
T0=$SECONDS
want() { [ -z "${CT_ONLY:-}" ] || [[ " $CT_ONLY " == *" $1 "* ]]; }
for w in ${CT_ONLY:-}; do
    case "$w" in main | crmsh | pcs) ;; *) echo "CT_ONLY: unknown part $w (main, crmsh, pcs)" >&2; exit 2 ;; esac
done

DOCKERD_PID=""
cleanup() {
    set +e
    local c
    for c in $(docker ps -aq --filter "label=dev.qnetd-test=container" 2>/dev/null); do
        docker rm -f "$c" >/dev/null 2>&1
    done
    for c in "$CT_WORK"/standin-*.pid; do
        [ -f "$c" ] && kill "$(cat "$c")" 2>/dev/null
    done
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null
        # its containerd and shims end with it; wait for it, bounded
        for _ in $(seq 300); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$CT_WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ engine
step() { printf '\n--- %s (%ds)\n' "$*" "$((SECONDS - T0))"; }
step "engine"
missing=()
for p in docker.io debootstrap gcc make mosquitto mosquitto-clients; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$CT_OUT/apt.log" 2>&1 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$CT_OUT/apt.log" 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$CT_OUT/apt.log" 2>&1; }
fi
command -v corosync-qdevice >/dev/null || bash "$top/test/realpeer/setup.sh"
if ! docker info >/dev/null 2>&1; then
    # no bridge, no NAT: containers use the host's network or none, and
    # nothing gets an address outside what the test makes
    setsid dockerd --bridge=none --iptables=false --ip-masq=false \
        </dev/null >"$CT_OUT/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 600); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$CT_OUT/dockerd.log" >&2; exit 1; }
        sleep 0.1 # dockerd has no readiness signal but its API
    done
    docker info >/dev/null 2>&1 || { ct_log "dockerd did not come up"; exit 1; }
    ct_log "started dockerd (pid $DOCKERD_PID)"
fi
docker version --format 'docker engine {{.Server.Version}}, client {{.Client.Version}}' | tee "$CT_OUT/engine.txt"

# ------------------------------------------------------------------ images
step "base image (built from source once, then reused)"
t=$SECONDS
HA_BASE_WORK=$CT_WORK/ha-base bash "$HERE/build-base.sh" 2>&1 | tee "$CT_OUT/build-base.log"
echo "base: $((SECONDS - t)) s" >"$CT_OUT/timings.txt"

step "add-on image from the repository's Dockerfile"
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=aarch64 ;; *) arch=$(uname -m) ;; esac
version=$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$top/config.yaml")
t=$SECONDS
# the classic builder, as older Supervisors build local add-ons; --network
# host lets the Go stand-in reach a module it lacks (no bridge here)
DOCKER_BUILDKIT=0 docker build --network host --build-arg "BUILD_FROM=$BASE_IMAGE" \
    --build-arg "BUILD_ARCH=$arch" --build-arg "BUILD_VERSION=$version" \
    -t "$CT_IMAGE" "$top" >"$CT_OUT/image-build.log" 2>&1 ||
    { tail -30 "$CT_OUT/image-build.log" >&2; ct_fail "image: the Dockerfile builds on $BASE_IMAGE"; exit 1; }
ct_pass "image: the Dockerfile builds unchanged on $BASE_IMAGE ($((SECONDS - t)) s)"
echo "image: $((SECONDS - t)) s" >>"$CT_OUT/timings.txt"
size=$(docker image inspect -f '{{.Size}}' "$CT_IMAGE")
base_size=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
{
    echo "image $CT_IMAGE: $size bytes ($((size / 1000000)) MB); base $BASE_IMAGE: $base_size bytes; the add-on adds $(((size - base_size) / 1000)) kB"
    docker history --format '{{.Size}}\t{{.CreatedBy}}' "$CT_IMAGE" | head -12 | cut -c1-160
} >"$CT_OUT/image-size.txt"
cat "$CT_OUT/image-size.txt"
go build -o "$CT_WORK/supervisor" "$top/test/container/supervisor"

# The add-on's own container and its Proxmox pairing: bad, taken, boot,
# die, wedge, peers (real nodes over pvecm's steps) and stop, in order
# (each after boot uses its container).
if want main; then
    # ------------------------------------------------------------------ bad
    step "bad options.json"
    d=$CT_WORK/bad
    ct_options "$d" '{"port":70000,"log_level":"info","tls_enabled":true,"pairing_enabled":true,"pairing_port":22,"authorized_keys":[]}'
    since=$(date +%s)
    id=$(ct_run "$CT_PREFIX-bad" "$d" none)
    rc=$(timeout 60 docker wait "$id" || echo timeout)
    docker logs "$id" >"$CT_OUT/bad.log" 2>&1
    ct_check "bad: a bad options.json stops the container with a non-zero exit code (got $rc)" \
        test "$rc" != 0 -a "$rc" != timeout
    ct_check "bad: the log names the option" grep -q "option 'port': 70000 is not valid" "$CT_OUT/bad.log"
    created=$(cd "$d" && find data config -mindepth 1 ! -path data/options.json | tr '\n' ' ')
    ct_check "bad: nothing created in /data or /config (found: ${created:-nothing})" test -z "$created"
    docker rm "$id" >/dev/null

    # ------------------------------------------------------------------ taken
    step "the qnetd port is taken (host network)"
    # the stand-in only holds a loopback port here; the daemon binds every address
    setsid "$CT_WORK/supervisor" -listen 127.0.0.1:0 -addr-file "$CT_WORK/taken.addr" </dev/null >/dev/null 2>&1 &
    holder=$!
    echo "$holder" >"$CT_WORK/standin-taken.pid"
    ct_wait_file "$CT_WORK/taken.addr" 10
    port=$(sed 's/.*://' "$CT_WORK/taken.addr")
    d=$CT_WORK/taken
    ct_options "$d" "{\"port\":$port,\"log_level\":\"info\",\"tls_enabled\":true,\"pairing_enabled\":false,\"pairing_port\":22,\"authorized_keys\":[]}"
    id=$(ct_run "$CT_PREFIX-taken" "$d" host)
    rc=$(timeout 60 docker wait "$id" || echo timeout)
    docker logs "$id" >"$CT_OUT/taken.log" 2>&1
    ct_standin_stop taken
    ct_check "taken: a daemon that cannot start stops the container with its exit code (got $rc, want 3)" test "$rc" = 3
    ct_check "taken: the log says why" grep -q "qnetd cannot start.*address already in use" "$CT_OUT/taken.log"
    docker rm "$id" >/dev/null

    # ------------------------------------------------------------------ boot
    step "boot"
    d=$CT_WORK/main
    # The defaults a user gets from the store: no pairing password, no key.
    ct_options "$d" '{"port":5403,"log_level":"info","tls_enabled":true,"pairing_enabled":true,"pairing_port":22,"authorized_keys":[],"forget_clusters":[]}'
    since=$(date +%s)
    id=$(ct_run "$CT_MAIN" "$d" none)
    ct_standin "$CT_MAIN"
    healthy=0
    ct_wait_event "$id" "$since" 90 "health_status: healthy" && healthy=1
    docker logs "$id" >"$CT_OUT/boot.log" 2>&1
    ct_check "boot: Docker's health turns healthy from the image's HEALTHCHECK ($(($(date +%s) - since)) s after start)" test $healthy = 1
    ct_check "boot: s6-rc started the oneshot" grep -q "s6-rc: info: service init-qnetd successfully started" "$CT_OUT/boot.log"
    ct_check "boot: s6-rc started the longrun" grep -q "s6-rc: info: service qnetd successfully started" "$CT_OUT/boot.log"
    ct_check "boot: the oneshot created the CA" grep -q "created a new certificate authority" "$CT_OUT/boot.log"
    ct_check "boot: the status page listens on the ingress port the Supervisor assigned ($CT_INGRESS_PORT)" \
        grep -qF "status_page=[::]:$CT_INGRESS_PORT" "$CT_OUT/boot.log"
    # Pairing out of the box: the pairing card shows a one-time password, which
    # pvecm's ssh-copy-id step then uses (realpeer.sh).
    ct_page "$CT_MAIN" /api/status >"$CT_OUT/status-boot.json" 2>&1 || true
    jq -r '.pairing.one_time.password // empty' "$CT_OUT/status-boot.json" >"$CT_WORK/pairing-password" 2>/dev/null || true
    otp=$(cat "$CT_WORK/pairing-password")
    ct_check "boot: the pairing card shows a one-time pairing password (${otp:+valid until $(jq -r .pairing.one_time.expires "$CT_OUT/status-boot.json")})" \
        test -n "$otp"
    ct_check "boot: the log says a one-time password was made, and not the password itself" \
        bash -c "grep -q 'made a one-time pairing password for the first pairing' '$CT_OUT/boot.log' && ! grep -qF -- '${otp:-none}' '$CT_OUT/boot.log'"
    pid1=$(docker exec "$id" cat /proc/1/comm)
    ct_check "boot: PID 1 is s6-overlay's s6-svscan (got $pid1)" test "$pid1" = s6-svscan
    docker exec "$id" s6-rc -a list >"$CT_OUT/s6-rc-active.txt" 2>&1 || true
    ct_check "boot: s6-rc lists init-qnetd and qnetd as up" \
        bash -c "grep -qx init-qnetd '$CT_OUT/s6-rc-active.txt' && grep -qx qnetd '$CT_OUT/s6-rc-active.txt'"
    dpid=$(ct_daemon_pid "$id")
    uid=$(docker exec "$id" awk '/^Uid:/ {print $2}' "/proc/$dpid/status")
    ct_check "boot: the daemon runs as coroqnetd (uid $uid)" test "$uid" = 5403
    docker exec "$id" corosync-qnetd-tool -s >"$CT_OUT/qnetd-tool-s.txt" 2>&1 || true
    ct_check "boot: corosync-qnetd-tool -s through docker exec" \
        grep -qE "^TLS:[[:space:]]+Required" "$CT_OUT/qnetd-tool-s.txt"

    # ------------------------------------------------------------------ die
    step "the daemon dies"
    since=$(date +%s)
    docker exec "$id" sh -c "kill -KILL $dpid"
    newpid=-1
    for _ in $(seq 100); do
        newpid=$(ct_daemon_pid "$id" 2>/dev/null || echo -1)
        # (s6-svstat says -1 while the service is down)
        [[ "$newpid" =~ ^[1-9][0-9]*$ ]] && [ "$newpid" != "$dpid" ] && break
        sleep 0.2 # s6-svstat is the only view of the supervision state
    done
    ct_check "die: s6 restarted the daemon (pid $dpid -> $newpid)" \
        bash -c "[[ '$newpid' =~ ^[1-9][0-9]*\$ ]] && [ '$newpid' != '$dpid' ]"
    ct_check "die: the container keeps running" test "$(docker inspect -f '{{.State.Running}}' "$id")" = true
    for _ in $(seq 100); do docker exec "$id" qnetd addon healthcheck >/dev/null 2>&1 && break; sleep 0.2; done
    ct_check "die: the restarted daemon answers the health check" docker exec "$id" qnetd addon healthcheck
    ct_check "die: the finish script logged the signal" bash -c "docker logs '$id' 2>&1 | grep -q 'qnetd was ended by signal 9'"

    # ------------------------------------------------------------------ wedge
    step "the daemon is wedged"
    dpid=$(ct_daemon_pid "$id")
    since=$(date +%s)
    docker exec "$id" sh -c "kill -STOP $dpid"
    unhealthy=0
    ct_wait_event "$id" "$since" 60 "health_status: unhealthy" && unhealthy=1
    ct_check "wedge: a daemon that does not answer turns the container unhealthy ($(($(date +%s) - since)) s)" test $unhealthy = 1
    since=$(date +%s)
    docker exec "$id" sh -c "kill -CONT $dpid"
    healthy=0
    ct_wait_event "$id" "$since" 60 "health_status: healthy" && healthy=1
    ct_check "wedge: healthy again once it answers ($(($(date +%s) - since)) s)" test $healthy = 1
    ct_health_log "$id" "$CT_OUT/health-history.txt"

    # ------------------------------------------------------------------ peers
    step "real peers: pvecm pairing, vote through a split, restart"
    t=$SECONDS
    set +e
    bash "$HERE/realpeer.sh" 2>&1 | tee "$CT_OUT/realpeer.txt"
    rc=${PIPESTATUS[0]}
    set -e
    sed -n 's/^\(PASS\|FAIL\) \[tls=[a-z]* *\] */\1 peers: /p' "$CT_OUT/realpeer.txt" >>"$CT_OUT/verdicts.txt"
    ct_check "peers: realpeer.sh passed every scenario (exit $rc)" test "$rc" = 0
    ct_page "$CT_MAIN" /api/status >"$CT_OUT/status-after-pairing.json" 2>&1 || true
    state=$(jq -r '.pairing.one_time.state + " by " + (.pairing.one_time.used_by // "-")' "$CT_OUT/status-after-pairing.json" 2>/dev/null)
    ct_check "peers: pvecm's key used up the one-time password; the card says so after the restart ($state)" \
        bash -c "[[ '$state' == 'used by SHA256:'* ]] && ! grep -qF -- '${otp:-none}' '$CT_OUT/status-after-pairing.json'"
    echo "realpeer: $((SECONDS - t)) s" >>"$CT_OUT/timings.txt"

    # ------------------------------------------------------------------ stop
    step "stop"
    ct_health_log "$CT_MAIN" "$CT_OUT/health-history-after-restart.txt"
    docker logs "$CT_MAIN" >"$CT_OUT/main-after-restart.log" 2>&1
    ct_stop "$CT_MAIN"
    docker logs "$CT_MAIN" >"$CT_OUT/main-final.log" 2>&1
    ct_check "stop: docker stop exits 0 (got $CT_STOP_RC) within the 10 s timeout (${CT_STOP_S} s)" \
        awk -v s="$CT_STOP_S" -v rc="$CT_STOP_RC" 'BEGIN{exit !(rc == 0 && s < 10)}'
    ct_check "stop: the daemon shut down on SIGTERM" grep -q "shutting down" "$CT_OUT/main-final.log"
    # the entities go unavailable: the add-on says offline before it goes (its
    # last will says the same when it cannot)
    ct_check "stop: the MQTT entities went unavailable (availability offline)" \
        bash -c "tail -n 20 '$CT_OUT/mqtt-messages.txt' | grep -qE ' qnetd/[^ ]+/availability offline\$'"
    ct_broker_stop "$CT_MAIN"
    ct_standin_stop "$CT_MAIN"
fi

# ------------------------------------------------------------------ crmsh
if want crmsh; then
    step "crmsh: SUSE's qdevice steps against a new container, then real nodes"
    t=$SECONDS
    set +e
    bash "$HERE/crmsh.sh" 2>&1 | tee "$CT_OUT/crmsh.txt"
    rc=${PIPESTATUS[0]}
    set -e
    sed -n 's/^\(PASS\|FAIL\) \[tls=[a-z]* *\] */\1 crmsh: /p' "$CT_OUT/crmsh.txt" >>"$CT_OUT/verdicts.txt"
    ct_check "crmsh: crmsh.sh passed every scenario (exit $rc)" test "$rc" = 0
    echo "crmsh: $((SECONDS - t)) s" >>"$CT_OUT/timings.txt"
fi

# ------------------------------------------------------------------ pcs
if want pcs; then
    step "pcs: RHEL's pcs host auth and pcs quorum device add against a new container (pcs only), then real nodes"
    t=$SECONDS
    set +e
    bash "$HERE/pcs.sh" 2>&1 | tee "$CT_OUT/pcs.txt"
    rc=${PIPESTATUS[0]}
    set -e
    sed -n 's/^\(PASS\|FAIL\) \[tls=[a-z]* *\] */\1 pcs: /p' "$CT_OUT/pcs.txt" >>"$CT_OUT/verdicts.txt"
    ct_check "pcs: pcs.sh passed every scenario (exit $rc)" test "$rc" = 0
    echo "pcs: $((SECONDS - t)) s" >>"$CT_OUT/timings.txt"
fi

# ------------------------------------------------------------------ report
echo "total: $((SECONDS - T0)) s" >>"$CT_OUT/timings.txt"
{
    echo "# Container test"
    echo
    cat "$CT_OUT/engine.txt"
    echo
    echo '## Verdicts'
    echo '```'
    cat "$CT_OUT/verdicts.txt"
    echo '```'
    echo '## Timings'
    echo '```'
    cat "$CT_OUT/timings.txt"
    echo '```'
    echo '## Image size'
    echo '```'
    cat "$CT_OUT/image-size.txt"
    echo '```'
    if want main; then
        echo '## Home Assistant during the split (MQTT state messages, events)'
        echo '```'
        grep -E '/cluster/[^ ]+/state ' "$CT_OUT/mqtt-messages.txt" 2>/dev/null | cut -c1-400
        grep -E '^POST /core/api/events/' "$CT_OUT/supervisor-requests.txt" 2>/dev/null
        grep -E 'cluster state changed|ffsplit decision|qdevice vote|node disconnected' "$CT_OUT/main-final.log" 2>/dev/null | cut -c1-300
        echo '```'
        echo '## Boot log (first boot)'
        echo '```'
        cat "$CT_OUT/boot.log"
        echo '```'
        echo '## Health history (docker inspect, after the wedge)'
        echo '```'
        cat "$CT_OUT/health-history.txt"
        echo '```'
        echo '## Pairing (pvecm qdevice setup steps from n1 over SSH)'
        echo '```'
        cat "$CT_OUT/pairing.log" 2>/dev/null
        echo '```'
        echo '## Real peers'
        echo '```'
        grep -E '^(PASS|FAIL) |passed,' "$CT_OUT/realpeer.txt" || true
        echo '```'
        echo '## Add-on log around the restart (second container)'
        echo '```'
        cat "$CT_OUT/main-final.log"
        echo '```'
    fi
    if want pcs; then
        echo "## pcs (each step with the answers of the nodes' pcsd stand-ins, then the add-on's pcsd lines)"
        echo '```'
        cat "$CT_OUT/pcs-steps.log" 2>/dev/null || true
        grep -E 'pcsd: ' "$CT_OUT/pcs-container.log" 2>/dev/null | cut -c1-300 || true
        echo '```'
    fi
} >"$CT_OUT/report.md"
failed=$(ct_failed)
printf '\ncontainer test: %s verdicts, %s failed, %d s; report: %s\n' \
    "$(wc -l <"$CT_OUT/verdicts.txt")" "$failed" "$((SECONDS - T0))" "$CT_OUT/report.md"
[ "$failed" = 0 ]
