#!/bin/bash
# The real-peer rig's qnetd-side certificate tool, done as pvecm qdevice
# setup does it: each step goes over SSH to our pairing endpoint with the
# real OpenSSH tools (ssh-copy-id with a password, ssh -o BatchMode=yes,
# scp), instead of running corosync-qnetd-certutil directly.
#
#   certutil-over-ssh.sh QNETD_BINARY -i
#   certutil-over-ssh.sh QNETD_BINARY -s -c REQUEST -n CLUSTER
#
# The rig runs it inside the qnetd host's namespaces, with QNETD_DATA_DIR
# set; the endpoint is started there on first use and ends with the rig.
set -euo pipefail
bin=$1
shift
state=${QNETD_DATA_DIR:?QNETD_DATA_DIR must be set by the rig}/pairing-test
port=${PAIRING_PORT:-2222}
mkdir -p "$state/home/.ssh"
# The client tools keep their state under HOME, as root's on a Proxmox node.
export HOME="$state/home"
ssh_opts=(-o UserKnownHostsFile="$state/known_hosts" -o StrictHostKeyChecking=accept-new
          -o BatchMode=yes -o IdentitiesOnly=yes -i "$state/id_rsa" -o ConnectTimeout=10)

log() { echo "[pvecm-replay] $*"; }

ensure_endpoint() {
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        printf 'pairing-password-%s\n' "$$" >"$state/password"
        setsid "$bin" pairing -l "127.0.0.1:$port" -data "$state/endpoint" \
            -pki /etc/corosync/qnetd/nssdb -password-file "$state/password" \
            >"$state/endpoint.log" 2>&1 </dev/null &
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1 # the endpoint has no readiness signal but its port
        done
    fi
    if [ ! -f "$state/id_rsa" ]; then
        ssh-keygen -q -t rsa -b 2048 -N '' -f "$state/id_rsa"
        # pvecm step 1: ssh-copy-id, answered with the pairing password.
        printf '#!/bin/sh\ncat "%s"\n' "$state/password" >"$state/askpass"
        chmod 700 "$state/askpass"
        log "ssh-copy-id"
        SSH_ASKPASS="$state/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=none \
            ssh-copy-id -i "$state/id_rsa.pub" -p "$port" \
            -o UserKnownHostsFile="$state/known_hosts" -o StrictHostKeyChecking=accept-new \
            root@127.0.0.1 </dev/null
    fi
}

case "${1:-}" in
-i)
    ensure_endpoint
    log "ssh -o BatchMode=yes -lroot IP corosync-qnetd-certutil -i"
    ssh "${ssh_opts[@]}" -p "$port" -lroot 127.0.0.1 corosync-qnetd-certutil -i || true
    # pvecm step 3: fetch the CA (the rig also reads it from the file).
    scp "${ssh_opts[@]}" -P "$port" "root@[127.0.0.1]:/etc/corosync/qnetd/nssdb/qnetd-cacert.crt" "$state/"
    cmp "$state/qnetd-cacert.crt" /etc/corosync/qnetd/nssdb/qnetd-cacert.crt
    ;;
-s)
    shift
    csr="" cluster=""
    while getopts "c:n:" o; do
        case $o in c) csr=$OPTARG ;; n) cluster=$OPTARG ;; *) exit 1 ;; esac
    done
    ensure_endpoint
    log "scp request to /tmp, sign, fetch cluster-$cluster.crt"
    cp "$csr" "$state/qdevice-net-node.crq"
    scp "${ssh_opts[@]}" -P "$port" "$state/qdevice-net-node.crq" "root@[127.0.0.1]:/tmp"
    ssh "${ssh_opts[@]}" -p "$port" -lroot 127.0.0.1 \
        corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n "$cluster"
    scp "${ssh_opts[@]}" -P "$port" "root@[127.0.0.1]:/etc/corosync/qnetd/nssdb/cluster-$cluster.crt" "$state/"
    cmp "$state/cluster-$cluster.crt" "/etc/corosync/qnetd/nssdb/cluster-$cluster.crt"
    ;;
*)
    echo "usage: $0 QNETD_BINARY -i | -s -c REQUEST -n CLUSTER" >&2
    exit 1
    ;;
esac
