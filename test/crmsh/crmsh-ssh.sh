#!/bin/bash
# crmsh-ssh.sh: run crmsh-qdevice.py as crmsh runs on a SUSE node's root:
# ssh, scp and ssh-copy-id find root's key and known_hosts in CRMSH_STATE
# (OpenSSH reads ~/.ssh from the password database, so wrappers first in
# PATH give it a config file instead); the port, when not 22, comes from
# CRMSH_PORT. The arguments are crmsh-qdevice.py's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${CRMSH_STATE:?CRMSH_STATE must be set}
mkdir -p "$state/bin" "$state/.ssh"
[ -f "$state/id_rsa" ] || ssh-keygen -q -t rsa -b 2048 -N '' -f "$state/id_rsa"
cat >"$state/ssh_config" <<CFG
Host *
    User root
    Port ${CRMSH_PORT:-22}
    IdentityFile $state/id_rsa
    IdentitiesOnly yes
    UserKnownHostsFile $state/known_hosts
    GlobalKnownHostsFile /dev/null
    IdentityAgent none
CFG
printf '#!/bin/sh\nexec /usr/bin/ssh -F "%s" "$@"\n' "$state/ssh_config" >"$state/bin/ssh"
printf '#!/bin/sh\nexec /usr/bin/scp -S /usr/bin/ssh -F "%s" "$@"\n' "$state/ssh_config" >"$state/bin/scp"
printf '#!/bin/sh\ncat "%s"\n' "${PAIRING_PASSWORD_FILE:-/dev/null}" >"$state/askpass"
chmod 700 "$state/bin/ssh" "$state/bin/scp" "$state/askpass"
export PATH="$state/bin:$PATH" HOME=$state
exec /usr/bin/python3 "$here/crmsh-qdevice.py" "$@"
