#!/usr/bin/python3
"""The qnetd-side steps of "crm cluster init qdevice", run by crmsh's own
code (Debian's crmsh package: crmsh.qdevice.QDevice, crmsh.utils,
crmsh.lock, crmsh.parallax) against a qnetd host's SSH endpoint.

    crmsh-qdevice.py -i                        key, checks, CA (crmsh steps 1-2)
    crmsh-qdevice.py -s -c REQUEST -n CLUSTER  upload, sign, fetch (steps 6-8),
                                               then enable and start the service

What stands in for a SUSE node (see test/crmsh/README.md): root's ~/.ssh
(crmsh-ssh.sh puts ssh and scp with their own config first in PATH), the
node-side certutil steps (the real-peer rig does them, as for pvecm) and the
cluster's node list (only this node). Everything crmsh sends to the qnetd
host is crmsh's.

Environment: QNETD_HOST, RIG_XFER (where the CA and the certificate go),
CRMSH_STATE (key pair, known_hosts, crmsh's local files), CRMSH_CLUSTER
(the cluster name; -s takes it from -n), PAIRING_PASSWORD_FILE.
"""
import getopt
import os
import shutil
import subprocess
import sys

from crmsh import log as crmsh_log

crmsh_log.setup_logging()  # as crm does before it loads the rest

from crmsh import qdevice, utils  # noqa: E402 (after the logging set-up)

host = os.environ["QNETD_HOST"]
xfer = os.environ["RIG_XFER"]
state = os.environ["CRMSH_STATE"]


class QDevice(qdevice.QDevice):
    # crmsh's local files (/etc/corosync/qdevice/net) live in the state dir
    qdevice_path = os.path.join(state, "qdevice-net")


# The cluster's other nodes get the certificates from the rig.
utils.list_cluster_nodes_except_me = lambda: []
utils.list_cluster_nodes = lambda: [utils.this_node()]


def log(msg):
    print("[crmsh] " + msg, flush=True)


def init(cluster):
    q = QDevice(host, port=5403, algo="ffsplit", tie_breaker="lowest", tls="on", cluster_name=cluster)
    # bootstrap.init_qdevice: a key first, if a password is needed
    if utils.check_ssh_passwd_need(host):
        log("ssh-copy-id -i id_rsa.pub root@" + host)
        env = dict(os.environ, SSH_ASKPASS=os.path.join(state, "askpass"), SSH_ASKPASS_REQUIRE="force", DISPLAY="none")
        subprocess.run(["ssh-copy-id", "-i", os.path.join(state, "id_rsa.pub"), "root@" + host],
                       env=env, stdin=subprocess.DEVNULL, check=True)
    log("valid_qnetd")
    q.valid_qnetd()
    log("init_db_on_qnetd (step 1)")
    q.init_db_on_qnetd()
    log("fetch_qnetd_crt_from_qnetd (step 2)")
    q.fetch_qnetd_crt_from_qnetd()
    shutil.copy(q.qnetd_cacert_on_local, os.path.join(xfer, "qnetd-cacert.crt"))


def sign(request, cluster):
    q = QDevice(host, port=5403, algo="ffsplit", tie_breaker="lowest", tls="on", cluster_name=cluster)
    os.makedirs(os.path.dirname(q.qdevice_crq_on_local), exist_ok=True)
    shutil.copy(request, q.qdevice_crq_on_local)
    log("copy_crq_to_qnetd (step 6)")
    q.copy_crq_to_qnetd()
    log("sign_crq_on_qnetd (step 7)")
    q.sign_crq_on_qnetd()
    log("fetch_cluster_crt_from_qnetd (step 8)")
    q.fetch_cluster_crt_from_qnetd()
    shutil.copy(q.qnetd_cluster_crt_on_local, os.path.join(xfer, "cluster-%s.crt" % cluster))
    # start_qdevice_service's qnetd part
    log("enable_qnetd, start_qnetd")
    q.enable_qnetd()
    q.start_qnetd()


def main():
    if sys.argv[1:2] == ["-i"]:
        init(os.environ["CRMSH_CLUSTER"])
        return
    if sys.argv[1:2] != ["-s"]:
        sys.exit("usage: crmsh-qdevice.py -i | -s -c REQUEST -n CLUSTER")
    opts = dict(getopt.getopt(sys.argv[2:], "c:n:")[0])
    sign(opts["-c"], opts["-n"])


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:  # crmsh's errors
        sys.exit("crmsh: %s" % e)
