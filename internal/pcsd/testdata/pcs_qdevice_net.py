#!/usr/bin/python3
"""Drive the qnetd host's side of `pcs quorum device add model net` with
pcs's own library, as the real command does on a cluster node, without
the cluster: the target and its token come from pcs's known-hosts, the
requests go through pcs's NodeCommunicator, the node's certificate
database is made and filled by pcs's qdevice_net functions (which run
corosync-qdevice-net-certutil).

usage: pcs_qdevice_net.py HOST CLUSTER OUTDIR
  full: GetCaCert, client_setup, client_generate_certificate_request,
  SignCertificate, client_cert_request_to_pk12,
  client_import_certificate_and_key; writes OUTDIR/ca.crt and
  OUTDIR/cluster.crt (DER).
usage: pcs_qdevice_net.py HOST CLUSTER OUTDIR sign CSRFILE
  only SignCertificate of the DER request in CSRFILE.
Reports are printed one a line as "REPORT SEVERITY: MESSAGE"; exit 1 on
an error.
"""
import logging
import os
import sys

from pcs.common.node_communicator import NodeCommunicatorFactory
from pcs.common.reports.processor import ReportProcessor
from pcs.lib.communication import qdevice_net as com
from pcs.lib.communication.tools import run_and_raise
from pcs.lib.corosync import qdevice_net
from pcs.lib.errors import LibraryError
from pcs.lib.external import CommandRunner
from pcs.lib.node_communication import (
    LibCommunicatorLogger,
    NodeTargetLibFactory,
)
from pcs.utils import read_known_hosts_file


class Printer(ReportProcessor):
    def _do_report(self, report_item):
        print(
            "REPORT %s: %s"
            % (report_item.severity.level, report_item.message.message),
            flush=True,
        )


def main():
    host, cluster, outdir = sys.argv[1:4]
    logger = logging.getLogger("pcs")
    reporter = Printer()
    # As `pcs quorum device add` reads them (its known_hosts_getter).
    known = read_known_hosts_file()
    target = NodeTargetLibFactory(known, reporter).get_target_from_hostname(
        host
    )
    factory = NodeCommunicatorFactory(
        LibCommunicatorLogger(logger, reporter), "hacluster", [], 60
    )
    runner = CommandRunner(logger, reporter, {})

    def sign(request):
        cmd = com.SignCertificate(reporter)
        cmd.add_request(target, request, cluster)
        return run_and_raise(factory.get_communicator(), cmd)[0][1]

    try:
        if sys.argv[4:5] == ["sign"]:
            with open(sys.argv[5], "rb") as f:
                sign(f.read())
            return 0
        cmd = com.GetCaCert(reporter)
        cmd.set_targets([target])
        ca = run_and_raise(factory.get_communicator(), cmd)[0][1]
        qdevice_net.client_setup(runner, ca)
        request = qdevice_net.client_generate_certificate_request(
            runner, cluster
        )
        signed = sign(request)
        pk12 = qdevice_net.client_cert_request_to_pk12(runner, signed)
        qdevice_net.client_import_certificate_and_key(runner, pk12)
    except LibraryError as e:
        for item in e.args:
            reporter.report(item)
        print("FAILED", flush=True)
        return 1
    with open(os.path.join(outdir, "ca.crt"), "wb") as f:
        f.write(ca)
    with open(os.path.join(outdir, "cluster.crt"), "wb") as f:
        f.write(signed)
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
