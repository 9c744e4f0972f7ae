#!/usr/bin/env bash
# Installs what labctl's build, tests and testbed need on a fresh Debian 12 machine (as root).
# Idempotent: skips what is already there.
set -euo pipefail

need=()
for pair in debootstrap:debootstrap systemd-nspawn:systemd-container iptables:iptables age:age \
            ssh:openssh-client ssh-keygen:openssh-client wg:wireguard-tools sqlite3:sqlite3 \
            nsenter:util-linux ip:iproute2; do
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

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain (cargo) found; install one with rustup" >&2
    exit 1
  fi
fi
