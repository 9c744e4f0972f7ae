#!/usr/bin/env bash
# bench/kex-compare.sh NAME [REPS]: on the converged bench testbed NAME (e.g. after
# `bench/run.sh --hosts 20 --keep`, NAME=bench20; or any testbed the harness prepared), time
#   - `ssh host true` to every host in parallel, with OpenSSH's default key exchange and with
#     curve25519-sha256 (what pyinfra's paramiko negotiates),
#   - a no-op `labctl plan` both ways (the second through LABCTL_SSH_CONFIG, as a user's
#     ~/.ssh/config would set KexAlgorithms),
#   - pyinfra's dry run (paramiko, curve25519).
# Prints each run's wall seconds. Not a test; the harness's BENCHMARKS.md does not include it.
set -euo pipefail
cd "$(dirname "$0")"
NAME=${1:?usage: bench/kex-compare.sh TESTBED [REPS]}
REPS=${2:-3}
TB=$PWD/.testbed/$NAME
INV=$PWD/.work/$NAME.inventory.yml
INV_PY=$PWD/.work/$NAME.inventory.py
LABCTL=${BENCH_LABCTL:-$PWD/../target/release/labctl}
[ -f "$INV" ] && [ -f "$TB/id_ed25519" ] || { echo "no prepared testbed $NAME under bench/.testbed" >&2; exit 1; }
conf=$(mktemp); trap 'rm -f "$conf"' EXIT
printf 'Host *\n  KexAlgorithms curve25519-sha256\n' > "$conf"
addrs=$(grep -o 'ansible_host: [0-9.]*' "$INV" | cut -d' ' -f2)

floor() {
    for a in $addrs; do
        ssh -F /dev/null -i "$TB/id_ed25519" -o UserKnownHostsFile="$TB/known_hosts" \
            -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes \
            -o IdentitiesOnly=yes -o ControlMaster=no -o ControlPath=none "$@" "root@$a" true &
    done
    wait
}
timed() {
    local label=$1; shift
    local t0 t1
    t0=$(date +%s.%N); "$@" > /dev/null 2>&1 || { echo "$label: exited $?" >&2; exit 1; }; t1=$(date +%s.%N)
    printf '%-34s %.3f s\n' "$label" "$(echo "$t1 - $t0" | bc)"
}
echo "hosts: $(echo "$addrs" | wc -w); load: $(cut -d' ' -f1-3 /proc/loadavg); $(ssh -V 2>&1)"
for _ in $(seq "$REPS"); do
    timed "floor, default kex" floor
    timed "floor, curve25519-sha256" floor -o KexAlgorithms=curve25519-sha256
    (cd labctl && timed "labctl plan, default kex" "$LABCTL" plan site.yml -i "$INV" --forks 10 --color never)
    (cd labctl && LABCTL_SSH_CONFIG=$conf timed "labctl plan, curve25519-sha256" "$LABCTL" plan site.yml -i "$INV" --forks 10 --color never)
done
if [ -x .venv/bin/pyinfra ] && [ -f "$INV_PY" ]; then
    for _ in $(seq "$REPS"); do
        (cd pyinfra && PYINFRA_PROGRESS=off NO_COLOR=1 timed "pyinfra --dry (paramiko)" ../.venv/bin/pyinfra --parallel 10 --dry "$INV_PY" deploy.py)
    done
fi
