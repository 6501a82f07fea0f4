#!/bin/bash
# lib.sh: what run.sh and realpeer.sh share: run the add-on's image the way
# the Supervisor runs an add-on, wait for Docker's events, record verdicts.
# Sourced; the caller sets CT_OUT (reports), CT_WORK (data dirs, stand-ins),
# CT_IMAGE and CT_TOKEN (run.sh exports them for realpeer.sh).
# shellcheck disable=SC2034 # the CT_ variables are for the scripts that source this

CT_PREFIX=qnetd-ct                  # every container of the test is named $CT_PREFIX-*
CT_MAIN=$CT_PREFIX-main
CT_RIG_ENV=(RIG_PREFIX=qct RIG_NET=10.93.0 "RIG_STATE=${CT_WORK:-}/rig")
# The ingress port the Supervisor stand-in assigns (config.yaml has
# ingress_port: 0). The containers that use it have a network namespace of
# their own, where every port is free.
CT_INGRESS_PORT=63403

ct_log() { printf '[container %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# verdicts: one line each in $CT_OUT/verdicts.txt; ct_failed counts them
ct_pass() { ct_log "PASS $*"; echo "PASS $*" >>"$CT_OUT/verdicts.txt"; }
ct_fail() { ct_log "FAIL $*"; echo "FAIL $*" >>"$CT_OUT/verdicts.txt"; }
ct_failed() { grep -c '^FAIL' "$CT_OUT/verdicts.txt" 2>/dev/null || true; }
# ct_check "what" CMD...: a verdict from a command's status (the test goes
# on either way; the verdicts decide its exit status)
ct_check() {
    local what=$1
    shift
    if "$@"; then ct_pass "$what"; else ct_fail "$what"; fi
    return 0
}

# ct_options DIR JSON: an add-on's /data (with the options.json the
# Supervisor writes from the Configuration tab) and its addon_config folder
ct_options() {
    mkdir -p "$1/data" "$1/config"
    printf '%s\n' "$2" >"$1/data/options.json"
}

# ct_run NAME DIR NETWORK [docker run options...]: start the add-on's
# container as the Supervisor does for this config.yaml: s6-overlay's /init
# as PID 1 (init: false, so no docker-init), /data and the addon_config map
# (/config), the Supervisor's token in the environment, its host name mapped
# (for host-network add-ons the Supervisor adds "supervisor" and "hassio" to
# /etc/hosts; here they point at loopback, where the stand-in listens), its
# OOM score adjustment, and config.yaml's stop timeout (10 s). Docker's
# health timing is shortened; the command is the image's HEALTHCHECK.
# Prints the container id.
ct_run() {
    local name=$1 dir=$2 net=$3
    shift 3
    docker run -d --name "$name" --network "$net" \
        --add-host supervisor:127.0.0.1 --add-host hassio:127.0.0.1 \
        -e SUPERVISOR_TOKEN="$CT_TOKEN" -e HASSIO_TOKEN="$CT_TOKEN" -e TZ=Etc/UTC \
        -v "$dir/data:/data" -v "$dir/config:/config" \
        --oom-score-adj 200 --stop-timeout 10 \
        --health-interval 2s --health-timeout 5s --health-retries 3 --health-start-period 30s \
        --label dev.qnetd-test=container "$@" "$CT_IMAGE"
}

ct_pid() { docker inspect -f '{{.State.Pid}}' "$1"; }
ct_id() { docker inspect -f '{{.Id}}' "$1"; }

# ct_wait_event ID SINCE TIMEOUT REGEX: wait for a Docker event of the
# container (its status line, e.g. "health_status: healthy" or "die") that
# matches REGEX in full, replaying from SINCE (seconds since the epoch).
ct_wait_event() {
    local id=$1 since=$2 to=$3 re=$4 fifo pid rc
    fifo=$(mktemp -u "$CT_WORK/events.XXXXXX")
    mkfifo "$fifo"
    timeout "$to" docker events --since "$since" --filter "container=$id" --format '{{.Status}}' >"$fifo" &
    pid=$!
    grep -m1 -qxE "$re" <"$fifo"
    rc=$?
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$fifo"
    return $rc
}

# ct_health NAME: Docker's health status now
ct_health() { docker inspect -f '{{.State.Health.Status}}' "$1"; }

# ct_daemon_pid NAME: the qnetd longrun's pid inside the container, as s6
# reports it (-1 while it is down)
ct_daemon_pid() { docker exec "$1" s6-svstat -o pid /run/service/qnetd; }

# ct_standin NAME [ARGS...]: the Supervisor API stand-in on 127.0.0.1:80 in
# the container's network namespace (ARGS go to it, e.g. ct_broker's
# CT_MQTT_ARGS); its pid goes to $CT_WORK/standin-NAME.pid
ct_standin() {
    local name=$1 pid af="$CT_WORK/standin-$1.addr"
    shift
    rm -f "$af"
    pid=$(ct_pid "$name")
    setsid nsenter -t "$pid" -n -- "$CT_WORK/supervisor" -listen 127.0.0.1:80 -token "$CT_TOKEN" \
        -ingress-port "$CT_INGRESS_PORT" -record "$CT_OUT/supervisor-requests.txt" -addr-file "$af" "$@" \
        </dev/null >>"$CT_OUT/supervisor-standin.log" 2>&1 &
    echo $! >"$CT_WORK/standin-$name.pid"
    ct_wait_file "$af" 10
}
# ct_page NAME PATH: GET PATH from the status page in the container's
# network namespace, from loopback (which, like the ingress proxy, the
# page lets in)
ct_page() {
    nsenter -t "$(ct_pid "$1")" -n -- curl -sS --max-time 10 "http://127.0.0.1:$CT_INGRESS_PORT$2"
}
ct_standin_stop() {
    local f="$CT_WORK/standin-$1.pid"
    [ -f "$f" ] || return 0
    kill "$(cat "$f")" 2>/dev/null
    rm -f "$f"
}

# ct_wait_file FILE SECONDS: a file another process writes once
ct_wait_file() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ -s "$1" ] && return 0
        sleep 0.1 # the writer has no other signal than the file itself
    done
    return 1
}

# ct_stop NAME: docker stop as the Supervisor stops an add-on; sets
# CT_STOP_S (seconds) and CT_STOP_RC (the container's exit code)
ct_stop() {
    local t0
    t0=$(date +%s.%N)
    docker stop -t 10 "$1" >/dev/null
    CT_STOP_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    CT_STOP_RC=$(docker inspect -f '{{.State.ExitCode}}' "$1")
}

# ct_health_log NAME FILE: Docker's health history, as docker inspect has it
ct_health_log() {
    docker inspect -f '{{range .State.Health.Log}}{{.Start.Format "15:04:05.000"}} exit={{.ExitCode}} {{printf "%q" .Output}}{{"\n"}}{{end}}' "$1" >"$2"
}

# ct_broker NAME: Debian's mosquitto on 127.0.0.1:1883 in the container's
# network namespace, with a password file, as the Mosquitto add-on offers
# itself to add-ons through the Supervisor; sets CT_MQTT_ARGS (for
# ct_standin) and CT_MQTT_SUB (mosquitto_sub's login options). Its pid goes
# to $CT_WORK/broker-NAME.pid.
CT_MQTT_USER=addons
ct_broker() {
    local name=$1 pid d="$CT_WORK/broker-$1" pw b
    for b in mosquitto mosquitto_passwd mosquitto_sub; do
        command -v "$b" >/dev/null || { echo "ct_broker: $b is not installed (Debian packages mosquitto, mosquitto-clients)" >&2; return 1; }
    done
    mkdir -p "$d"
    pw=$(head -c 12 /dev/urandom | base64 | tr '+/' '-_')
    mosquitto_passwd -c -b "$d/passwd" "$CT_MQTT_USER" "$pw" || return 1
    printf 'user root\nlistener 1883 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence false\nlog_dest stderr\n' \
        "$d/passwd" >"$d/mosquitto.conf"
    pid=$(ct_pid "$name")
    setsid nsenter -t "$pid" -n -- mosquitto -c "$d/mosquitto.conf" </dev/null >>"$CT_OUT/broker.log" 2>&1 &
    echo $! >"$CT_WORK/broker-$name.pid"
    CT_MQTT_ARGS=(-mqtt 127.0.0.1:1883 -mqtt-user "$CT_MQTT_USER" -mqtt-password "$pw")
    CT_MQTT_SUB=(-h 127.0.0.1 -p 1883 -u "$CT_MQTT_USER" -P "$pw")
    # ready when a client can log in (mosquitto has no other signal)
    local i
    for ((i = 0; i < 100; i++)); do
        nsenter -t "$pid" -n -- mosquitto_sub "${CT_MQTT_SUB[@]}" -t qnetd-test/ready -E -W 2 >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# ct_mqtt_record NAME FILE: every message on the add-on's topics and Home
# Assistant's discovery prefix, one line each ("TIME TOPIC PAYLOAD"),
# until ct_broker_stop
ct_mqtt_record() {
    setsid nsenter -t "$(ct_pid "$1")" -n -- mosquitto_sub "${CT_MQTT_SUB[@]}" -F '%I %t %p' \
        -t 'qnetd/#' -t 'homeassistant/#' </dev/null >>"$2" 2>>"$CT_OUT/broker.log" &
    echo $! >"$CT_WORK/mqttsub-$1.pid"
}

ct_broker_stop() {
    local f
    for f in "$CT_WORK/mqttsub-$1.pid" "$CT_WORK/broker-$1.pid"; do
        [ -f "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null
        rm -f "$f"
    done
}
