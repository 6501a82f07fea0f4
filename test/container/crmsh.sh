#!/bin/bash
# crmsh.sh: SUSE's way to pair, against a fresh add-on container: crmsh's own
# code for "crm cluster init qdevice" (test/crmsh/crmsh-qdevice.py, Debian's
# crmsh 4.4.1) does the qnetd-side steps over SSH from the setup node, with
# the one-time pairing password the new container's status page shows;
# then two real corosync + corosync-qdevice nodes with TLS vote through a
# split. run.sh runs it after the Proxmox scenarios. Verdicts, in
# scenarios.sh's format:
#   up2  crmsh's steps (ssh-copy-id, valid_qnetd, init_db_on_qnetd with its
#        remote lock, CA fetch, upload into the nssdb directory, signing,
#        certificate fetch, enable and start), then 2 nodes quorate with the
#        qdevice vote
#   a    the link between the nodes is cut: only n1 stays quorate; healed,
#        whole again
# (no "set -e": the rig's library works with statuses)
CT_HERE=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$CT_HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$CT_HERE/lib.sh"
export "${CT_RIG_ENV[@]}"
name=$CT_PREFIX-crmsh
dir=$CT_WORK/crmsh
export CRMSH_STATE=$CT_WORK/crmsh-node CRMSH_CLUSTER=hacluster PAIRING_PASSWORD_FILE=$CT_WORK/crmsh-password
mkdir -p "$CRMSH_STATE"
# shellcheck source-path=SCRIPTDIR source=../realpeer/scenarios.sh
. "$top/test/realpeer/scenarios.sh"

ct_options "$dir" '{"port":5403,"log_level":"info","tls_enabled":true,"pairing_enabled":true,"pairing_port":22,"authorized_keys":[],"forget_clusters":[]}'
since=$(date +%s)
id=$(ct_run "$name" "$dir" none)
ct_standin "$name"
if ! ct_wait_event "$id" "$since" 90 "health_status: healthy"; then
    echo "the crmsh container did not turn healthy" >&2
    docker logs "$name" >"$CT_OUT/crmsh-container.log" 2>&1
    exit 1
fi
ct_page "$name" /api/status | jq -r '.pairing.one_time.password // empty' >"$PAIRING_PASSWORD_FILE"

scen_parse_args --tls-modes on \
    --qnetd-external "$(ct_pid "$name")" --qnetd-tool "docker exec $name corosync-qnetd-tool" \
    --qnetd-certutil "$top/test/crmsh/crmsh-ssh.sh" \
    --logs "$CT_OUT/crmsh-logs" --results "$CT_OUT/crmsh.tsv"
scen_begin
scen_header "crmsh against the add-on's container"

suite_up on 2 ffsplit lowest crmsh-2n --cluster-name "$CRMSH_CLUSTER"
rc=$?
cp "$RIG_STATE/certs.log" "$CT_OUT/crmsh-pairing.log" 2>/dev/null
if check_up on up2 "crmsh's qdevice steps over SSH, then 2 nodes ffsplit over TLS: both quorate, Qdevice, 3 votes" $rc; then
    run_fault on a "2-node split, qnetd reachable: only n1 (tie_breaker lowest) quorate" n1 \
        'rig_block n1 n2' 'rig_heal' \
        n1=Q@1 n2=N@2
else
    not_run on "a:2-node split"
fi
suite_down
docker logs "$name" >"$CT_OUT/crmsh-container.log" 2>&1
ct_stop "$name"
ct_standin_stop "$name"
docker rm "$name" >/dev/null
scen_end
