#!/bin/bash
# pcs.sh: RHEL's way to pair, against a fresh add-on container with only the
# pcs endpoint on (pairing_enabled false, pcs_enabled true): the one-time
# pairing password its status page shows, then on n1 Debian's real pcs
# 0.11.5 (../pcs/pcs-qdevice-add.sh, the rig's --qdevice-setup): pcs host
# auth of the nodes (their pcsd stood in by ../pcs/node-pcsd.py) and of the
# add-on, and pcs quorum device add model net host=<add-on> algorithm=ffsplit.
# The nodes then run corosync-qdevice with the certificates and the device
# section pcs installed. run.sh runs it after crmsh. Verdicts, in
# scenarios.sh's format:
#   up2  pcs's steps, then 2 nodes quorate with the qdevice vote over TLS
#   a    the link between the nodes is cut: only n1 stays quorate; healed,
#        whole again
#   card the status page: the one-time password used up by pcs's token,
#        which owns the cluster
# (no "set -e": the rig's library works with statuses)
CT_HERE=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$CT_HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$CT_HERE/lib.sh"
export "${CT_RIG_ENV[@]}"
name=$CT_PREFIX-pcs
dir=$CT_WORK/pcs
cluster=rhelprod
export PAIRING_PASSWORD_FILE=$CT_WORK/pcs-password
# shellcheck source-path=SCRIPTDIR source=../realpeer/scenarios.sh
. "$top/test/realpeer/scenarios.sh"

ct_options "$dir" '{"port":5403,"log_level":"info","tls_enabled":true,"pairing_enabled":false,"pairing_port":22,"pcs_enabled":true,"pcs_port":2224,"authorized_keys":[],"forget_clusters":[]}'
since=$(date +%s)
id=$(ct_run "$name" "$dir" none)
ct_standin "$name"
if ! ct_wait_event "$id" "$since" 90 "health_status: healthy"; then
    echo "the pcs container did not turn healthy" >&2
    docker logs "$name" >"$CT_OUT/pcs-container.log" 2>&1
    exit 1
fi
ct_page "$name" /api/status >"$CT_OUT/pcs-status-boot.json"
jq -r '.pairing.one_time.password // empty' "$CT_OUT/pcs-status-boot.json" >"$PAIRING_PASSWORD_FILE"

scen_parse_args --tls-modes on \
    --qnetd-external "$(ct_pid "$name")" --qnetd-tool "docker exec $name corosync-qnetd-tool" \
    --logs "$CT_OUT/pcs-logs" --results "$CT_OUT/pcs.tsv"
scen_begin
scen_header "pcs against the add-on's container (pcs endpoint only)"

if [ -s "$PAIRING_PASSWORD_FILE" ]; then
    suite_up on 2 ffsplit lowest pcs-2n --cluster-name "$cluster" --qdevice-setup "$top/test/pcs/pcs-qdevice-add.sh"
    rc=$?
else
    mkdir -p "$CT_OUT/pcs-logs"
    echo "the status page showed no one-time pairing password" >"$CT_OUT/pcs-logs/rig-up.log"
    SUITE_LOG=$CT_OUT/pcs-logs
    rc=98
fi
cp "$RIG_STATE/pcs-steps.log" "$CT_OUT/pcs-steps.log" 2>/dev/null
if check_up on up2 "pcs host auth, pcs quorum device add (real pcs, stand-in node pcsd), then 2 nodes ffsplit over TLS: both quorate, Qdevice, 3 votes" $rc; then
    run_fault on a "2-node split, qnetd reachable: only n1 (tie_breaker lowest) quorate" n1 \
        'rig_block n1 n2' 'rig_heal' \
        n1=Q@1 n2=N@2
else
    not_run on "a:2-node split"
fi
suite_down

# What the page shows after the pairing: the one-time password used up by
# the token pcs got, which owns the cluster.
ct_page "$name" /api/status >"$CT_OUT/pcs-status-after.json"
card=$(jq -c '{one_time: .pairing.one_time.state, used_by: .pairing.one_time.used_by, tokens: [.pairing.pcs.tokens[] | {id, one_time, clusters}]}' \
    "$CT_OUT/pcs-status-after.json" 2>&1)
if jq -e --arg c "$cluster" '.pairing.one_time.state == "used" and (.pairing.pcs.tokens | length == 1)
        and .pairing.pcs.tokens[0].one_time and .pairing.pcs.tokens[0].clusters == [$c]
        and .pairing.one_time.used_by == "pcs token " + .pairing.pcs.tokens[0].id' \
    "$CT_OUT/pcs-status-after.json" >/dev/null 2>&1; then
    verdict on card PASS "status page: the one-time password was used by pcs's token, which owns $cluster" - - "$card"
else
    verdict on card FAIL "status page: the one-time password was used by pcs's token, which owns $cluster" - - "$card"
fi
docker logs "$name" >"$CT_OUT/pcs-container.log" 2>&1
ct_stop "$name"
ct_standin_stop "$name"
docker rm "$name" >/dev/null
scen_end
