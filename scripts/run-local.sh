#!/usr/bin/env bash
# make run: the add-on's whole stack on this machine, with safe defaults:
# qnetd on port 5403 with TLS required, the status page (with /health and
# /metrics) on 127.0.0.1 only, the pairing endpoint on a high port with the
# one-time pairing password of a first start, everything kept in ./.data.
# Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-$PWD/.data}
web=${QNETD_WEB:-127.0.0.1:8403}
pairing_port=${PAIRING_PORT:-2222}
mkdir -p "$data/config" "$data/run"
opts=$data/options.json
if [ ! -f "$opts" ]; then
    # No pairing_password: the first start makes a one-time password, as
    # the add-on does.
    umask 077
    cat >"$opts" <<JSON
{"port": 5403, "log_level": "info", "tls_enabled": true, "pairing_enabled": true,
 "pairing_port": $pairing_port, "authorized_keys": []}
JSON
fi
export QNETD_ADDON_OPTIONS=$opts QNETD_ADDON_DATA=$data QNETD_ADDON_CONFIG=$data/config \
    QNETD_ADDON_RUN=$data/run QNETD_ADDON_USER='' QNETD_ADDON_NSS_LINK='' QNETD_ADDON_INGRESS_ADDR=$web
./bin/qnetd addon init
pw=$(sed -n 's/.*"pairing_password": *"\([^"]*\)".*/\1/p' "$opts")
otp=
otp_file=$data/ssh/one-time-password.json
if [ -f "$otp_file" ]; then
    otp_pw=$(sed -n 's/.*"password": *"\([^"]*\)".*/\1/p' "$otp_file")
    otp_exp=$(sed -n 's/.*"expires": *"\([^"]*\)".*/\1/p' "$otp_file")
    if [ -n "$otp_pw" ] && [ "$(date -d "$otp_exp" +%s)" -gt "$(date +%s)" ]; then
        otp="$otp_pw (one-time, until $(date -d "$otp_exp" '+%H:%M'))"
    fi
fi
port=$(sed -n 's/.*"pairing_port": *\([0-9]*\).*/\1/p' "$opts")
cat <<TXT

  status page      http://$web/  (health: /health, metrics: /metrics)
  qnetd            port 5403, TLS required
  pairing          ssh -p $port root@<this host>, password: ${otp:-${pw:-<none: make a one-time password on the status page>}}
                   (pvecm connects to port 22: see the ~/.ssh/config stanza in the log below)
  tool             ./bin/corosync-qnetd-tool -s -p $data/run/corosync-qnetd.sock
  options          $opts

TXT
exec ./bin/qnetd addon run
