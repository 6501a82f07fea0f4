#!/bin/bash
# realpeer.sh: real corosync + corosync-qdevice nodes (test/realpeer) against
# the add-on's running container; run.sh runs it with the container up.
#
# The container runs with "--network none"; the rig moves its qnetd link into
# the container's network namespace (rig.sh --qnetd-external), so the nodes
# reach the add-on at 10.93.0.2 on its default ports, 5403 and 22, as they
# would reach a Home Assistant host. Verdicts, in scenarios.sh's format:
#   up2  pvecm's pairing steps over SSH (pvecm-qdevice-setup.sh on n1), then
#        2 nodes with TLS: both quorate with the qdevice vote
#   api  the add-on published the cluster's vote to the Supervisor API
#        stand-in, with the Supervisor's token
#   a    the link between the nodes is cut: only n1 (tie_breaker lowest)
#        stays quorate; healed, whole again
#   r    the add-on restarts as the Supervisor restarts it (docker stop, a
#        new container over the same /data): the stop is clean, the CA, host
#        keys and installed keys are the same files, the nodes come back
#        with the certificates they were given before, and pvecm's key still
#        logs in to the same host key
#   ha   with a broker offered after the restart: the split and the heal
#        show in the cluster's MQTT state, the qnetd_cluster_state_changed
#        event and the info log (ha-seen)
# (no "set -e": the rig's library works with statuses)
CT_HERE=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$CT_HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$CT_HERE/lib.sh"
export "${CT_RIG_ENV[@]}"
export PVECM_STATE=$CT_WORK/pvecm PAIRING_PASSWORD_FILE=$CT_WORK/pairing-password
# shellcheck source-path=SCRIPTDIR source=../realpeer/scenarios.sh
. "$top/test/realpeer/scenarios.sh"

main_dir=$CT_WORK/main
pid=$(ct_pid "$CT_MAIN")
scen_parse_args --tls-modes on \
    --qnetd-external "$pid" --qnetd-tool "docker exec $CT_MAIN corosync-qnetd-tool" \
    --qnetd-certutil "$CT_HERE/pvecm-qdevice-setup.sh" \
    --logs "$CT_OUT/realpeer-logs" --results "$CT_OUT/realpeer.tsv"
scen_begin
scen_header "the add-on's container"

suite_up on 2 ffsplit lowest container-2n
rc=$?
cp "$RIG_STATE/certs.log" "$CT_OUT/pairing.log" 2>/dev/null
if ! check_up on up2 "pvecm pairing over SSH, then 2 nodes ffsplit over TLS: both quorate, Qdevice, 3 votes" $rc; then
    not_run on "api:vote published to Home Assistant" "a:2-node split" "r:restart keeps CA, host keys, installed keys"
    suite_down
    scen_end
    exit 1
fi

# api: what the add-on sent to the Supervisor's API (the stand-in records it)
t0=$(rig_now)
# Without a broker (the stand-in offers none) the add-on sets its entities
# through the REST API; the id ends in a hash of the exact cluster name.
want='POST /core/api/states/binary_sensor\.qnetd_realpeer_[0-9a-f]{8}_vote auth=ok \{"state":"on"'
until grep -qE "$want" "$CT_OUT/supervisor-requests.txt" 2>/dev/null || older "$t0" 30; do
    sleep 0.5 # the add-on posts on its status page's next refresh
done
if grep -qE "$want" "$CT_OUT/supervisor-requests.txt" && ! grep -q ' auth=bad ' "$CT_OUT/supervisor-requests.txt"; then
    verdict on api PASS "vote published to Home Assistant with the Supervisor's token" - - \
        "$(grep -c . "$CT_OUT/supervisor-requests.txt") requests, e.g. $(grep -m1 -E "$want" "$CT_OUT/supervisor-requests.txt" | cut -c1-120)"
else
    verdict on api FAIL "vote published to Home Assistant with the Supervisor's token" - - \
        "requests: $(tr '\n' ' ' <"$CT_OUT/supervisor-requests.txt" 2>/dev/null | cut -c1-300)"
fi

run_fault on a "2-node split, qnetd reachable: only n1 (tie_breaker lowest) quorate" n1 \
    'rig_block n1 n2' 'rig_heal' \
    n1=Q@1 n2=N@2

# r: restart as the Supervisor does it
persist=(nssdb/qnetd-pki.pem nssdb/qnetd-cacert.crt nssdb/cluster-realpeer.crt
         ssh/ssh_host_ed25519_key ssh/ssh_host_rsa_key ssh/authorized_keys)
title="restart: clean stop, same CA, host keys and installed keys, nodes back with their certificates"
ok=1 det=""
for f in "${persist[@]}"; do
    [ -s "$main_dir/data/$f" ] || { ok=0; det+="no /data/$f before the restart; "; }
done
before=$(cd "$main_dir/data" && sha256sum "${persist[@]}" 2>&1)
grep -q "$(cut -d' ' -f2 "$PVECM_STATE/id_rsa.pub")" "$main_dir/data/ssh/authorized_keys" ||
    { ok=0; det+="pvecm's key is not in /data/ssh/authorized_keys; "; }
ct_stop "$CT_MAIN"
docker logs "$CT_MAIN" >"$CT_OUT/main-first-run.log" 2>&1
ct_standin_stop "$CT_MAIN"
if [ "$CT_STOP_RC" = 0 ] && awk -v s="$CT_STOP_S" 'BEGIN{exit !(s < 10)}'; then
    det+="docker stop: exit 0 in ${CT_STOP_S}s; "
else
    ok=0 det+="docker stop: exit $CT_STOP_RC in ${CT_STOP_S}s (want 0 within 10s); "
fi
docker rm "$CT_MAIN" >/dev/null
since=$(date +%s)
id=$(ct_run "$CT_MAIN" "$main_dir" none)
# This time the Supervisor offers an MQTT broker (the Mosquitto add-on):
# the entities go through MQTT discovery (scenario ha).
ct_broker "$CT_MAIN" || echo "the MQTT broker did not start: $(tail -3 "$CT_OUT/broker.log")" >&2
ct_standin "$CT_MAIN" "${CT_MQTT_ARGS[@]}"
ct_mqtt_record "$CT_MAIN" "$CT_OUT/mqtt-messages.txt"
if ct_wait_event "$id" "$since" 90 "health_status: healthy"; then
    det+="new container healthy after $(($(date +%s) - since))s; "
else
    ok=0 det+="new container not healthy within 90s; "
fi
t0=$(rig_now)
# (corosync-qdevice retries every 8 s and its connects to the vanished
# address time out first: give it longer than a fault's deadline)
if "$RIG" qnetd-attach "$(ct_pid "$CT_MAIN")" >>"$SUITE_LOG/rig-ops.log" 2>&1 && rig_load_env && wait_whole "$t0" 90; then
    det+="cluster whole again (3 votes) ${RECOVER}s after the new container got the link; "
else
    ok=0 det+="cluster not whole 90s after the restart: $(all_state); "
fi
after=$(cd "$main_dir/data" && sha256sum "${persist[@]}" 2>&1)
if [ "$before" = "$after" ]; then
    det+="${#persist[@]} files unchanged; "
else
    ok=0 det+="files changed: $(diff <(echo "$before") <(echo "$after") | tr '\n' ' '); "
fi
if docker logs "$CT_MAIN" 2>&1 | grep -q "created a new certificate authority"; then
    ok=0 det+="the second start created a new CA; "
fi
# pvecm's key, checked against the host key it accepted before the restart
out=$(rig_in_t 30 n1 ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes \
    -o UserKnownHostsFile="$PVECM_STATE/known_hosts" -i "$PVECM_STATE/id_rsa" \
    -lroot "$(rig_qnetd_ip)" corosync-qnetd-tool -l 2>&1)
if grep -q 'Cluster "realpeer"' <<<"$out"; then
    det+="pvecm's key logs in to the same host key"
else
    ok=0 det+="ssh with pvecm's key and known_hosts: $(tr '\n' ' ' <<<"$out" | cut -c1-200)"
fi
verdict on r "$([ $ok = 1 ] && echo PASS || echo FAIL)" "$title" - "${RECOVER:--}" "$det"

# ha: the split as Home Assistant sees it, through the broker the
# Supervisor offered the restarted add-on: the cluster's MQTT state, the
# qnetd_cluster_state_changed event (after the 10 s hold time) and the
# info log line, during the split and again after the heal.
#   ha_seen STATE MQTT_MARK API_MARK: all three say STATE after the marks
#   (line counts of the files when the fault began)
ha_seen() {
    local st=$1
    tail -n +"$(($2 + 1))" "$CT_OUT/mqtt-messages.txt" |
        grep -qE "qnetd/[^ ]+/cluster/realpeer_[0-9a-f]{8}/state \{.*\"state\":\"$st\"" || return 1
    tail -n +"$(($3 + 1))" "$CT_OUT/supervisor-requests.txt" |
        grep -qE "^POST /core/api/events/qnetd_cluster_state_changed auth=ok .*\"new_state\":\"$st\"" || return 1
    docker logs "$CT_MAIN" 2>&1 | grep "cluster state changed" | grep -q "new_state=$st"
}
# ha_await STATE MQTT_MARK API_MARK SECONDS
ha_await() {
    local t0
    t0=$(rig_now)
    until ha_seen "$1" "$2" "$3"; do
        older "$t0" "$4" && return 1
        sleep 0.5 # three files written by three programs: no one signal
    done
}
ha_note() {  # what each of the three showed for STATE
    local st=$1
    printf 'mqtt: %s; event: %s; log: %s' \
        "$(grep -E "/cluster/realpeer_[0-9a-f]{8}/state .*\"state\":\"$st\"" "$CT_OUT/mqtt-messages.txt" | tail -1 | cut -c1-160)" \
        "$(grep -E "events/qnetd_cluster_state_changed .*\"new_state\":\"$st\"" "$CT_OUT/supervisor-requests.txt" | tail -1 | cut -c1-200)" \
        "$(docker logs "$CT_MAIN" 2>&1 | grep "cluster state changed" | grep "new_state=$st" | tail -1 | cut -c1-200)"
}
title="the split in Home Assistant: MQTT state, event and info log say split, then healthy after the heal"
mqtt_mark=$(wc -l <"$CT_OUT/mqtt-messages.txt" 2>/dev/null || echo 0)
api_mark=$(wc -l <"$CT_OUT/supervisor-requests.txt")
ha_ok=1 ha_det=""
# ha_heal: run_fault's heal, once the split was seen (or not) in all three
ha_heal() {
    if ha_await split "$mqtt_mark" "$api_mark" 60; then
        ha_det+="split: $(ha_note split); "
    else
        ha_ok=0 ha_det+="split not seen in all three within 60 s: $(ha_note split); "
    fi
    heal_mqtt=$(wc -l <"$CT_OUT/mqtt-messages.txt")
    heal_api=$(wc -l <"$CT_OUT/supervisor-requests.txt")
    rig_heal
}
run_fault on ha "$title" n1 'rig_block n1 n2' ha_heal n1=Q@1 n2=N@2
if ha_await healthy "${heal_mqtt:-0}" "${heal_api:-0}" 60; then
    ha_det+="healed: $(ha_note healthy); "
else
    ha_ok=0 ha_det+="healthy not seen in all three within 60 s of the heal: $(ha_note healthy); "
fi
if grep -qE ' homeassistant/sensor/qnetd_realpeer_[0-9a-f]{8}/state/config \{' "$CT_OUT/mqtt-messages.txt"; then
    ha_det+="discovery config of the cluster's state sensor retained"
else
    ha_ok=0 ha_det+="no discovery config for the cluster's state sensor"
fi
# run_fault gave its verdict on the quorum; this one is Home Assistant's
verdict on ha-seen "$([ $ha_ok = 1 ] && echo PASS || echo FAIL)" "split and heal seen in Home Assistant (MQTT, event, log)" - - "$ha_det"

suite_down
scen_end
