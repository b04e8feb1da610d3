#!/usr/bin/env bash
# Starts a second OpenSSH sshd on loopback, reached in the jump-host interop test
# (tests/sshd_interop.rs) through the first one (start.sh, AllowTcpForwarding yes) as a
# bastion. Its own directory, port (22023), login user and host key. Source it after start.sh:
#   NETAUTO_TEST_SSHD_INNER_ADDR  127.0.0.1:22023
#   NETAUTO_TEST_SSHD_INNER_USER  netauto-sshinner
#   NETAUTO_TEST_SSHD_INNER_DIR   password, client keys, known_hosts (its host key), sshd.log
set -euo pipefail
inner_dir=${NETAUTO_TEST_SSHD_INNER_DIR:-/tmp/netauto-sshd-inner}
inner_port=${NETAUTO_TEST_SSHD_INNER_PORT:-22023}
(
  NETAUTO_TEST_SSHD_DIR=$inner_dir \
  NETAUTO_TEST_SSHD_PORT=$inner_port \
  NETAUTO_TEST_SSHD_LOGIN=netauto-sshinner \
  NETAUTO_TEST_SSHD_LISTEN= \
  bash "$(dirname "${BASH_SOURCE[0]}")/start.sh" >/dev/null
)
export NETAUTO_TEST_SSHD_INNER_ADDR="127.0.0.1:$inner_port"
export NETAUTO_TEST_SSHD_INNER_USER=netauto-sshinner
export NETAUTO_TEST_SSHD_INNER_DIR=$inner_dir
echo "inner sshd for the jump-host interop test on $NETAUTO_TEST_SSHD_INNER_ADDR (files in $inner_dir)"
