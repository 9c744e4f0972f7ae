#!/usr/bin/env bash
# Installs what labctl's build, tests and testbed need on a fresh Debian 12 machine (as root).
# Idempotent: skips what is already there.
set -euo pipefail

need=()
for pair in debootstrap:debootstrap systemd-nspawn:systemd-container iptables:iptables age:age \
            ssh:openssh-client ssh-keygen:openssh-client wg:wireguard-tools sqlite3:sqlite3 \
            nsenter:util-linux ip:iproute2 curl:curl; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Real programs the tests run against instead of stand-ins (Debian's packages): PostgreSQL and
# Redis (backups, restores, exporters), Prometheus/Alertmanager tools (rules, routing, mail),
# S3 clients. Installed only when missing, and never left running by the install.
extra=()
for pair in psql:postgresql-client pg_ctlcluster:postgresql redis-server:redis-server \
            promtool:prometheus amtool:prometheus-alertmanager \
            prometheus-postgres-exporter:prometheus-postgres-exporter \
            prometheus-redis-exporter:prometheus-redis-exporter \
            aws:awscli rclone:rclone s3cmd:s3cmd; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  # Debian's own binaries only: a pyenv shim of the same name is not the package.
  [ -x "/usr/bin/$cmd" ] || extra+=("$pkg")
done
if [ ${#extra[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  echo "setup: installing ${extra[*]}" >&2
  apt-get update -qq
  # policy-rc.d 101: the packages' postinst must not start servers on this machine.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# PyPI tools in a private venv (never the system's Python): ansible-core to compare
# `ansible-inventory --list`, moto's S3 server, aiosmtpd as an SMTP sink, jsonschema to check
# labctl's JSON Schemas with a real validator.
export LABCTL_TEST_VENV="${LABCTL_TEST_VENV:-$HOME/.cache/labctl/test-venv}"
if [ ! -x "$LABCTL_TEST_VENV/bin/moto_server" ] || [ ! -x "$LABCTL_TEST_VENV/bin/ansible-inventory" ] \
   || ! "$LABCTL_TEST_VENV/bin/python" -c 'import aiosmtpd, jsonschema, yaml' 2>/dev/null; then
  echo "setup: creating $LABCTL_TEST_VENV (ansible-core, moto[server], aiosmtpd, jsonschema)" >&2
  python3 -m venv "$LABCTL_TEST_VENV"
  "$LABCTL_TEST_VENV/bin/pip" install -q --disable-pip-version-check \
    'ansible-core==2.19.14' 'moto[server]==5.2.5' 'aiosmtpd==1.4.6' 'jsonschema==4.26.0'
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain (cargo) found; install one with rustup" >&2
    exit 1
  fi
fi

# A real Kubernetes control plane (kine, kube-apiserver, controller-manager, scheduler, kwok) built
# from the Go modules in tests/controlplane, for tests/controlplane.rs. Opt-in for now: its cold
# build takes long on two cores (scripts/controlplane.sh: measured times); once built it is cached
# per go.sum under ~/.cache/labctl/controlplane. Without it that test says SKIPPED.
if [ "${LABCTL_CONTROLPLANE:-0}" = 1 ]; then
  "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/controlplane.sh" build
else
  echo "setup: not building the test control plane (LABCTL_CONTROLPLANE=1 builds it)" >&2
fi
