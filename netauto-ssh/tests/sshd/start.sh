#!/usr/bin/env bash
# Starts an OpenSSH sshd on loopback for netauto-ssh's interop tests (tests/sshd_interop.rs).
# Needs root and Debian's openssh-server (installed here when missing). Idempotent: a
# previous instance started by this script (same directory) is stopped first.
#
# Optional inputs (the fanout_openssh bench starts several instances with them):
#   NETAUTO_TEST_SSHD_LOGIN   the login user to create (default netauto-sshtest)
#   NETAUTO_TEST_SSHD_LISTEN  extra loopback addresses to listen on besides 127.0.0.1 (at most
#                             15: sshd takes 16 listen addresses), space separated
#   NETAUTO_TEST_SSHD_QUIET   1: LogLevel ERROR instead of VERBOSE (no log line per login)
#
# Source it to get the variables the tests read:
#   NETAUTO_TEST_SSHD_ADDR  127.0.0.1:<port> (port from NETAUTO_TEST_SSHD_PORT, default 22022)
#   NETAUTO_TEST_SSHD_USER  the login user (netauto-sshtest)
#   NETAUTO_TEST_SSHD_DIR   password, client_ed25519 (no passphrase), client_ed25519_enc and
#                           passphrase, known_hosts (the server's key), sshd.log
set -euo pipefail

NETAUTO_TEST_SSHD_DIR=${NETAUTO_TEST_SSHD_DIR:-/tmp/netauto-sshd}
port=${NETAUTO_TEST_SSHD_PORT:-22022}
user=${NETAUTO_TEST_SSHD_LOGIN:-netauto-sshtest}
loglevel=VERBOSE
[ "${NETAUTO_TEST_SSHD_QUIET:-0}" = 1 ] && loglevel=ERROR
dir=$NETAUTO_TEST_SSHD_DIR

if [ ! -x /usr/sbin/sshd ]; then
  echo "installing openssh-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi

if [ -f "$dir/sshd.pid" ]; then
  kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
  sleep 0.2
fi
rm -rf "$dir"
mkdir -p "$dir" /run/sshd
chmod 755 "$dir"

id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
echo "$user:$(cat "$dir/password")" | chpasswd
head -c 12 /dev/urandom | base64 | tr -d '/+=' > "$dir/passphrase"

ssh-keygen -q -t ed25519 -N '' -C netauto-sshd-host -f "$dir/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C netauto-client -f "$dir/client_ed25519"
ssh-keygen -q -t ed25519 -N "$(cat "$dir/passphrase")" -C netauto-client-enc -f "$dir/client_ed25519_enc"
cat "$dir/client_ed25519.pub" "$dir/client_ed25519_enc.pub" > "$dir/authorized_keys"
chmod 644 "$dir/authorized_keys"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" > "$dir/known_hosts"

cat > "$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $user
MaxStartups 100:30:200
MaxSessions 50
# The jump-host interop test goes through this sshd to a second one (start_inner.sh).
AllowTcpForwarding yes
LogLevel $loglevel
CONF
for extra in ${NETAUTO_TEST_SSHD_LISTEN:-}; do
  echo "ListenAddress $extra" >> "$dir/sshd_config"
done

/usr/sbin/sshd -t -f "$dir/sshd_config"
/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

export NETAUTO_TEST_SSHD_ADDR="127.0.0.1:$port"
export NETAUTO_TEST_SSHD_USER="$user"
export NETAUTO_TEST_SSHD_DIR
echo "sshd for interop tests on $NETAUTO_TEST_SSHD_ADDR (files in $dir)"
