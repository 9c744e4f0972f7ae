#!/usr/bin/env bash
# bench/run.sh: labctl vs Ansible vs pyinfra on disposable test hosts; writes BENCHMARKS.md.
#   bench/run.sh              full run: 1 and 5 hosts, 5 runs of each fast figure, 3 of each slow one
#   bench/run.sh --quick      the same steps with fewer runs (3 / 1), to check the harness
#   bench/run.sh --hosts 1    only some host counts (comma-separated)
#   bench/run.sh --keep       leave the test hosts running afterwards
# Needs root (labctl testbed), Debian 12, cargo, python3 (with venv), openssh-client, util-linux (nsenter).
# Not a test: CI does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ANSIBLE_VERSION=12.3.0   # bundles ansible-core 2.19.x, community.general, ansible.posix
PYINFRA_VERSION=3.10.0

[ "$(id -u)" = 0 ] || { echo "bench/run.sh: needs root (labctl testbed boots systemd-nspawn hosts)" >&2; exit 1; }
for c in cargo python3 ssh nsenter; do
    command -v "$c" >/dev/null || { echo "bench/run.sh: missing $c" >&2; exit 1; }
done
command -v strace >/dev/null || echo "bench/run.sh: strace not found: BENCHMARKS.md will have no controller trace (apt-get install -y strace)" >&2
command -v perf >/dev/null || echo "bench/run.sh: perf not found: BENCHMARKS.md will have no CPU-by-program table (apt-get install -y linux-perf)" >&2

# 1. A private virtualenv with pinned Ansible and pyinfra, from PyPI. The `ansible` package bundles
#    the community.general and ansible.posix collections, so Ansible Galaxy is not needed.
VENV=bench/.venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "ansible==$ANSIBLE_VERSION" \
   || ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "pyinfra==$PYINFRA_VERSION"; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "ansible==$ANSIBLE_VERSION" "pyinfra==$PYINFRA_VERSION"
fi
"$VENV/bin/ansible-doc" -t module community.general.ufw >/dev/null
"$VENV/bin/ansible-doc" -t module ansible.posix.sysctl >/dev/null

# 2. labctl, release build.
mkdir -p bench/results
cargo build --release --quiet 2> bench/results/cargo-build.log || { tail -40 bench/results/cargo-build.log >&2; exit 1; }

# 3. Measure and write BENCHMARKS.md.
exec "$VENV/bin/python" bench/lib/harness.py --cmdline "bench/run.sh $*" "$@"
