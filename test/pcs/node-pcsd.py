#!/usr/bin/python3
"""node-pcsd.py: a stand-in for a RHEL cluster node's own pcsd, for the
calls that `pcs host auth` and `pcs quorum device add model net` make to
the cluster's nodes. It runs inside one real-peer rig node (its network
and mount namespace, so /etc/corosync is that node's) and answers each
call the way Debian's pcsd 0.11.5 does (/usr/share/pcsd/remote.rb), doing
the work with the real tools:

  /remote/auth                  hacluster and the password -> 200 + a new
                                random token; a wrong one -> 200, empty
  /remote/set_configs           known-hosts (pcs host auth's sync): saved
                                into this node's pcsd directory when newer
  /remote/qdevice_net_client_init_certificate_storage
                                runs the real `pcs -- qdevice net-client
                                setup` with the CA on stdin (pcs runs
                                corosync-qdevice-net-certutil -i)
  /remote/qdevice_net_client_import_certificate
                                runs the real `pcs -- qdevice net-client
                                import-certificate` (certutil -m)
  /remote/qdevice_client_enable recorded only (no systemd, no boot)
  /remote/set_corosync_conf     writes /etc/corosync/corosync.conf
  /remote/reload_corosync_conf  runs the real `corosync-cfgtool -R`
  /remote/qdevice_client_start  starts the real `corosync-qdevice -f -d`
                                in this node (as the rig starts it)

What is stood in: pcsd itself (this program, not Debian's Ruby daemon),
systemd (enable is a record, start is a process this program starts,
"is corosync running" is whether corosync-cfgtool reaches this node's
corosync), Pacemaker (none runs; nothing pcs asks here needs it). Every
other request, and any request without a token this program issued,
is answered as pcsd answers it: 401 {"notauthorized":"true"} without a
valid token, 404 "Unknown Request" for a command it does not know. Every
request is logged one a line to stdout and to --record.

usage: node-pcsd.py --node NAME --listen ADDR:PORT --cert PEM --key PEM
         --state DIR --password-file FILE --qdevice-pidfile FILE
         [--record FILE]
DIR is the node's pcsd directory (known-hosts, issued tokens); the pcs
command run on this node sees it as /var/lib/pcsd.
"""
import argparse
import base64
import http.cookies
import http.server
import json
import os
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid

MAX_BODY = 1 << 20  # pcs sends a corosync.conf or a PKCS#12 file at most
TOOL_TIMEOUT = 60   # pcs waits 60 s for each answer

args = None
lock = threading.Lock()


def log(line):
    line = "[node-pcsd %s %s] %s" % (args.node, time.strftime("%H:%M:%S"), line)
    print(line, flush=True)
    if args.record:
        with lock, open(args.record, "a") as f:
            f.write(line + "\n")


def tokens_file():
    return os.path.join(args.state, "issued-tokens")


def issued(token):
    if not token:
        return False
    try:
        with open(tokens_file()) as f:
            return token in (line.strip() for line in f)
    except FileNotFoundError:
        return False


def issue():
    token = str(uuid.uuid4())
    with lock, open(tokens_file(), "a") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(token + "\n")
    return token


def run(argv, stdin=None):
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=TOOL_TIMEOUT,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def corosync_running():
    # pcsd asks systemd; without it, whether this node's corosync answers
    # on its IPC (the node's network namespace holds it)
    return run(["corosync-cfgtool", "-s"])[0] == 0


def write_atomic(path, data, mode):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
    os.replace(tmp, path)


def known_hosts_version(text):
    try:
        return int(json.loads(text).get("data_version", 0))
    except (ValueError, AttributeError):
        return -1


def local_cluster_name():
    try:
        with open("/etc/corosync/corosync.conf") as f:
            for line in f:
                k, _, v = line.strip().partition(":")
                if k.strip() == "cluster_name":
                    return v.strip()
    except FileNotFoundError:
        pass
    return ""


# Each handler takes the form and returns (status, body, what the log says).

def h_set_configs(form):
    try:
        msg = json.loads(form.get("configs", ""))
    except ValueError:
        return 200, json.dumps({"status": "bad_json"}), "bad_json"
    name = local_cluster_name()
    if name and msg.get("cluster_name") != name:
        return 200, json.dumps({"status": "wrong_cluster_name"}), "wrong_cluster_name"
    result = {}
    for cfg, val in (msg.get("configs") or {}).items():
        if cfg != "known-hosts" or not isinstance(val, dict) or val.get("type") != "file":
            result[cfg] = "not_supported"
            continue
        text = val.get("text", "")
        path = os.path.join(args.state, "known-hosts")
        try:
            with open(path) as f:
                local = f.read()
        except FileNotFoundError:
            local = None
        if msg.get("force") or local is None or known_hosts_version(text) > known_hosts_version(local):
            write_atomic(path, text, 0o600)
            result[cfg] = "accepted"
        elif text == local:
            result[cfg] = "accepted"
        else:
            result[cfg] = "rejected"
    return 200, json.dumps({"status": "ok", "result": result}), "result=%s" % json.dumps(result)


def pcs_net_client(sub, data):
    # as pcsd: the form value (base64, as pcs sent it) on the command's stdin
    rc, out, err = run(["pcs", "--", "qdevice", "net-client", sub], stdin=data.encode())
    if rc != 0:
        return 400, err, "pcs qdevice net-client %s exit %d: %s" % (sub, rc, err.strip())
    return 200, out, "pcs qdevice net-client %s exit 0" % sub


def h_init_storage(form):
    return pcs_net_client("setup", form.get("ca_certificate", ""))


def h_import_certificate(form):
    return pcs_net_client("import-certificate", form.get("certificate", ""))


def h_qdevice_enable(form):
    # pcsd: "corosync is not enabled, skipping" unless systemd has corosync
    # enabled. The rig has no boot to enable anything for: the request is
    # recorded, and the answer is the one an enabled cluster gets.
    with lock, open(os.path.join(args.state, "enabled-services"), "a") as f:
        f.write("corosync-qdevice\n")
    return 200, "corosync-qdevice enabled", "recorded (no systemd)"


def h_set_corosync_conf(form):
    conf = form.get("corosync_conf", "")
    if not conf.strip():
        return 400, "Failed", "empty corosync.conf"
    path = "/etc/corosync/corosync.conf"
    try:
        with open(path) as f:
            old = f.read()
        write_atomic(os.path.join(args.state, "corosync.conf.bak"), old, 0o644)
    except FileNotFoundError:
        pass
    write_atomic(path, conf, 0o644)
    dev = "with" if "device {" in conf else "without"
    return 200, "Succeeded", "wrote /etc/corosync/corosync.conf (%d bytes, %s a device section)" % (len(conf), dev)


def h_reload(form):
    if not corosync_running():
        return 200, json.dumps({"code": "not_running", "message": ""}), "corosync not running"
    rc, out, err = run(["corosync-cfgtool", "-R"])
    if rc != 0:
        lines = [l for l in (out + err).splitlines() if l.strip() != "Reloading corosync.conf..."]
        msg = "Unable to reload corosync configuration: " + "\n".join(lines).strip()
        return 200, json.dumps({"code": "failed", "message": msg}), msg
    return 200, json.dumps({"code": "reloaded", "message": ""}), "corosync-cfgtool -R exit 0"


qdevice = None


def qdevice_alive():
    try:
        with open(args.qdevice_pidfile) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return False


def h_qdevice_start(form):
    global qdevice
    if not corosync_running():
        return 200, "corosync is not running, skipping", "corosync not running"
    if qdevice_alive():
        return 200, "corosync-qdevice started", "already running"
    # as the rig starts it (rig.sh rig_up): foreground, debug log, its own
    # process group, the pid where the rig stops it from
    logf = open("/var/log/corosync/qdevice.log", "a")
    qdevice = subprocess.Popen(["corosync-qdevice", "-f", "-d"], stdin=subprocess.DEVNULL,
                               stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    logf.close()
    write_atomic(args.qdevice_pidfile, "%d\n" % qdevice.pid, 0o644)
    return 200, "corosync-qdevice started", "started corosync-qdevice -f -d (pid %d)" % qdevice.pid


HANDLERS = {
    "set_configs": h_set_configs,
    "qdevice_net_client_init_certificate_storage": h_init_storage,
    "qdevice_net_client_import_certificate": h_import_certificate,
    "qdevice_client_enable": h_qdevice_enable,
    "set_corosync_conf": h_set_corosync_conf,
    "reload_corosync_conf": h_reload,
    "qdevice_client_start": h_qdevice_start,
}


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "node-pcsd"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass  # one line per request comes from handle_request

    def answer(self, code, body, what):
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if not body.startswith("{") else "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
        log("%s %s -> %d %s" % (self.command, self.path.split("?")[0], code, what))

    def handle_request(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return self.answer(413, "", "body too large")
        raw = self.rfile.read(n).decode(errors="replace") if n else ""
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith("/remote/"):
            return self.answer(404, "Unknown Request", "not a remote command")
        cmd = path[len("/remote/"):]
        if cmd == "auth":
            if form.get("username") == "hacluster" and form.get("password") == args.password:
                return self.answer(200, issue(), "hacluster authenticated, token issued")
            return self.answer(200, "", "wrong user or password")
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie") or "")
        except http.cookies.CookieError:
            pass
        token = jar["token"].value if "token" in jar else ""
        if not issued(token):
            return self.answer(401, '{"notauthorized":"true"}', "no valid token")
        h = HANDLERS.get(cmd)
        if h is None:
            return self.answer(404, "Unknown Request", "not answered by this stand-in")
        try:
            return self.answer(*h(form))
        except (OSError, subprocess.SubprocessError) as e:
            return self.answer(400, str(e), "failed: %s" % e)

    do_GET = handle_request
    do_POST = handle_request


def main():
    global args
    p = argparse.ArgumentParser()
    for a in ("--node", "--listen", "--cert", "--key", "--state", "--password-file", "--qdevice-pidfile"):
        p.add_argument(a, required=True)
    p.add_argument("--record")
    args = p.parse_args()
    with open(args.password_file) as f:
        args.password = f.read().strip()
    os.makedirs(args.state, mode=0o700, exist_ok=True)
    host, _, port = args.listen.rpartition(":")
    srv = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    log("listening on %s" % args.listen)
    srv.serve_forever()


if __name__ == "__main__":
    main()
