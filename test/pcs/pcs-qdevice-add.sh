#!/bin/bash
# pcs-qdevice-add.sh: RHEL's way to add a quorum device, run by the
# real-peer rig as its --qdevice-setup command (rig.sh): the nodes run
# corosync without a device section; this script
#   1. starts a stand-in for each node's pcsd (node-pcsd.py, on the node's
#      address, port 2224, inside the node's namespaces),
#   2. on the first node, as root, runs Debian's real pcs 0.11.5:
#        pcs host auth n1 addr=IP n2 addr=IP -u hacluster -p ...   (the nodes)
#        pcs host auth QNETD_IP -u hacluster -p <pairing password> (the add-on)
#        pcs quorum device add model net host=QNETD_IP algorithm=ffsplit
#   3. leaves the nodes with the certificates and the corosync.conf that
#      pcs made and with corosync-qdevice running; the rig then waits for
#      the whole cluster.
# Real: pcs (its CLI, its library, its Ruby pcsd-cli for host auth), the
# qnetd host's pcsd endpoint (the add-on), corosync-qdevice-net-certutil
# (run by pcs), corosync (its reload) and corosync-qdevice. Stood in: the
# nodes' pcsd (node-pcsd.py: no systemd, no Pacemaker; see its header).
# The qnetd host's pcs name is its address, so the host= that pcs writes
# into corosync.conf is what corosync-qdevice connects to.
#
# Environment (rig.sh exports RIG_SH and the rig's own): PAIRING_PASSWORD_FILE
# (the password for the add-on's hacluster: the one-time pairing password
# its status page shows, or pairing_password). Output: each step, and the
# stand-ins' answers in $RIG_STATE/pcs-steps.log.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../realpeer/rig.sh
. "${RIG_SH:?run by rig.sh --qdevice-setup}"
rig_load_env || { echo "pcs-qdevice-add: the rig is down" >&2; exit 1; }
pw_file=${PAIRING_PASSWORD_FILE:?PAIRING_PASSWORD_FILE must name the add-on password file}
[ -s "$pw_file" ] || { echo "pcs-qdevice-add: $pw_file is empty" >&2; exit 1; }
qnetd=$(rig_qnetd_ip)
d=$RIG_STATE/pcs
steps=$RIG_STATE/pcs-steps.log
mkdir -p "$d" /var/lib/pcsd
: >"$steps"
# the nodes' hacluster password (the stand-ins'); the add-on's is another
(umask 077; head -c 12 /dev/urandom | base64 >"$d/node-password")

say() { echo "[pcs $(date +%H:%M:%S)] $*" | tee -a "$steps"; }

# pcs on NODE as root, with its own /var/lib/pcsd (known-hosts): the
# node's pcsd directory, which the node's stand-in writes too, as pcsd
# and pcs share /var/lib/pcsd on a real node
pcs_on() {  # node args...
    local n=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner sh
    rig_in "$n" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME="$d" \
        timeout -k 5 300 unshare -m --propagation private sh -c \
        'mount --bind "$1" /var/lib/pcsd && shift && exec "$@"' sh "$RIG_STATE/$n/pcsd" pcs "$@"
}

nodes=$(rig_cluster_nodes 1)
first=$(rig_cluster_prefix 1)1
hosts=()
for n in $nodes; do
    ip=$(rig_node_ip "$n")
    mkdir -p "$RIG_STATE/$n/pcsd"
    chmod 700 "$RIG_STATE/$n/pcsd"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$n" \
        -keyout "$d/$n.key" -out "$d/$n.crt" >/dev/null 2>&1 || { say "openssl failed"; exit 1; }
    rig_start_proc "$n" "pcsd-$n" "$RIG_STATE/$n/log/node-pcsd.log" \
        /usr/bin/python3 "$here/node-pcsd.py" --node "$n" --listen "$ip:2224" \
        --cert "$d/$n.crt" --key "$d/$n.key" --state "$RIG_STATE/$n/pcsd" \
        --password-file "$d/node-password" --qdevice-pidfile "$RIG_STATE/pids/qdevice-$n.pid" \
        --record "$steps" >/dev/null
    hosts+=("$n" "addr=$ip")
done
for n in $nodes; do
    for ((i = 0; i < 100; i++)); do
        rig_in_t 5 "$n" ss -Htln "sport = :2224" 2>/dev/null | grep -q . && break
        sleep 0.1 # the stand-in's only sign of readiness is its socket
    done
    rig_in_t 5 "$n" ss -Htln "sport = :2224" | grep -q . || { say "$n: the pcsd stand-in does not listen"; exit 1; }
done

say "$first: pcs host auth ${hosts[*]} -u hacluster (the nodes' pcsd)"
pcs_on "$first" host auth "${hosts[@]}" -u hacluster -p "$(cat "$d/node-password")" 2>&1 | tee -a "$steps"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { say "pcs host auth of the nodes exited $rc"; exit 1; }

say "$first: pcs host auth $qnetd -u hacluster (the add-on's pcsd endpoint)"
pcs_on "$first" host auth "$qnetd" -u hacluster -p "$(cat "$pw_file")" 2>&1 | tee -a "$steps"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { say "pcs host auth of the qnetd host exited $rc"; exit 1; }

say "$first: pcs quorum device add model net host=$qnetd algorithm=ffsplit"
pcs_on "$first" quorum device add model net host="$qnetd" algorithm=ffsplit 2>&1 | tee -a "$steps"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { say "pcs quorum device add exited $rc"; exit 1; }
say "done: corosync.conf on $first now has:"
sed -n '/^quorum {/,/^}/p' "$RIG_STATE/$first/etc/corosync.conf" | tee -a "$steps"
