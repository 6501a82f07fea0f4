#!/bin/bash
# The qnetd-side steps of "pvecm qdevice setup", run on the cluster's setup
# node against the add-on's pairing endpoint on port 22 (pvecm has no port
# option), with the real OpenSSH tools and the commands pvecm runs (DOCS.md,
# "Pairing with Proxmox"):
#
#   pvecm-qdevice-setup.sh -i                       steps 1-3: key, CA
#   pvecm-qdevice-setup.sh -s -c REQUEST -n CLUSTER steps 4-6: sign
#
# The real-peer rig runs it on the setup node for an external qnetd
# (rig.sh --qnetd-external) with QNETD_HOST and RIG_XFER set: the CA goes to
# $RIG_XFER/qnetd-cacert.crt, the cluster certificate to
# $RIG_XFER/cluster-CLUSTER.crt.
#
# PVECM_STATE is root's SSH state on the setup node (key pair, known_hosts);
# it outlives the rig, so that a later login can check that a restarted
# add-on kept its host keys and the key installed here.
# PAIRING_PASSWORD_FILE holds the password the add-on's pairing card shows.
set -euo pipefail
host=${QNETD_HOST:?QNETD_HOST must be set by the rig}
xfer=${RIG_XFER:?RIG_XFER must be set by the rig}
state=${PVECM_STATE:?PVECM_STATE must be set}
mkdir -p "$state/.ssh"
# ssh takes ~ from the password database, not from HOME: name every file.
export HOME=$state
ssh_opts=(-o UserKnownHostsFile="$state/known_hosts" -o StrictHostKeyChecking=accept-new
          -o BatchMode=yes -o IdentitiesOnly=yes -i "$state/id_rsa" -o ConnectTimeout=10)

log() { echo "[pvecm] $*"; }

case "${1:-}" in
-i)
    [ -f "$state/id_rsa" ] || ssh-keygen -q -t rsa -b 2048 -N '' -f "$state/id_rsa"
    # 1. ssh-copy-id -i /root/.ssh/id_rsa root@IP: the user types the
    #    pairing password (here: askpass reads it) and accepts the host key
    #    after comparing its fingerprint with the add-on's log (here:
    #    accept-new). A key installed before is found by its probe login.
    printf '#!/bin/sh\ncat "%s"\n' "${PAIRING_PASSWORD_FILE:?PAIRING_PASSWORD_FILE must be set}" >"$state/askpass"
    chmod 700 "$state/askpass"
    log "ssh-copy-id -i id_rsa root@$host"
    SSH_ASKPASS="$state/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=none \
        ssh-copy-id -i "$state/id_rsa.pub" \
        -o UserKnownHostsFile="$state/known_hosts" -o StrictHostKeyChecking=accept-new \
        "root@$host" </dev/null
    # 2. its exit status is ignored, as pvecm does (a CA that exists is fine)
    log "ssh -o BatchMode=yes -lroot $host corosync-qnetd-certutil -i"
    ssh "${ssh_opts[@]}" -lroot "$host" corosync-qnetd-certutil -i || true
    # 3.
    log "scp root@[$host]:/etc/corosync/qnetd/nssdb/qnetd-cacert.crt"
    scp "${ssh_opts[@]}" "root@[$host]:/etc/corosync/qnetd/nssdb/qnetd-cacert.crt" "$xfer/"
    ;;
-s)
    shift
    csr="" cluster=""
    while getopts "c:n:" o; do
        case $o in c) csr=$OPTARG ;; n) cluster=$OPTARG ;; *) exit 1 ;; esac
    done
    if [ -z "$csr" ] || [ -z "$cluster" ]; then echo "usage: $0 -s -c REQUEST -n CLUSTER" >&2; exit 1; fi
    # 4. the request keeps pvecm's name in the qnetd host's /tmp
    cp "$csr" "$state/qdevice-net-node.crq"
    log "scp qdevice-net-node.crq root@[$host]:/tmp"
    scp "${ssh_opts[@]}" "$state/qdevice-net-node.crq" "root@[$host]:/tmp"
    # 5. pvecm requires the tool's success and its "Certificate stored in"
    log "ssh -o BatchMode=yes -lroot $host corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n $cluster"
    out=$(ssh "${ssh_opts[@]}" -lroot "$host" corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n "$cluster")
    echo "$out"
    grep -q '^Certificate stored in ' <<<"$out"
    # 6.
    log "scp root@[$host]:/etc/corosync/qnetd/nssdb/cluster-$cluster.crt"
    scp "${ssh_opts[@]}" "root@[$host]:/etc/corosync/qnetd/nssdb/cluster-$cluster.crt" "$xfer/"
    ;;
*)
    echo "usage: $0 -i | -s -c REQUEST -n CLUSTER" >&2
    exit 1
    ;;
esac
