#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests, and the end-to-end suite on disposable test hosts.
# Run as root on Debian 12 (the end-to-end tests boot systemd-nspawn hosts). Without root, the
# end-to-end tests are skipped and say so.
#
# `scripts/test.sh --release trixie` runs the host-role end-to-end tests (HOST_ROLE_TESTS below)
# on Debian 13 test hosts instead: the Debian 13 matrix of docs/systems.md. Opt-in, not part of
# the default run (docs/systems.md says why and what it costs).
set -euo pipefail
cd "$(dirname "$0")/.."
release=
if [ "${1:-}" = --release ]; then
  release=${2:-}
  case "$release" in
    bookworm | trixie) shift 2 ;;
    *) echo "test.sh: --release takes bookworm or trixie, got '${release}'" >&2; exit 3 ;;
  esac
fi
. scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

# The tests that prove labctl's roles on a host (and what they stand on: the testbed itself,
# the one probe's facts): the set the Debian 13 matrix runs. Filters for `cargo test --test main`.
HOST_ROLE_TESTS=(testbed:: e2e_facts:: e2e_roles:: e2e_ufw:: e2e_k3s:: e2e_backups::)
if [ -n "$release" ]; then
  if [ "$(id -u)" != 0 ] || [ "${LABCTL_E2E:-1}" != 1 ]; then
    # The matrix is nothing but end-to-end tests: skipping them all would pass for nothing.
    echo "test.sh: --release $release runs end-to-end tests on test hosts: run it as root" >&2
    exit 3
  fi
  export LABCTL_E2E=1 LABCTL_TESTBED_RELEASE="$release"
  start=$(date +%s)
  status=0
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  cargo test --locked --test main -- --include-ignored --test-threads="${LABCTL_TEST_THREADS:-2}" \
    "${HOST_ROLE_TESTS[@]}" "$@" 2>&1 | tee "$log" || status=$?
  ran=$(grep -cE '^test [a-z0-9_]+::[a-z0-9_]+ \.\.\. (ok|FAILED)$' "$log" || true)
  skipped=$(grep -c '^SKIPPED ' "$log" || true)
  echo "test.sh: on $release test hosts: $ran tests ran (${HOST_ROLE_TESTS[*]}), SKIPPED: $skipped, $(( $(date +%s) - start )) s"
  grep '^SKIPPED ' "$log" >&2 || true
  exit "$status"
fi

if [ "$(id -u)" = 0 ] && [ "${LABCTL_E2E:-1}" = 1 ]; then
  export LABCTL_E2E=1
else
  echo "test: not root (or LABCTL_E2E=0): end-to-end tests on test hosts will be skipped" >&2
  export LABCTL_E2E=0
fi
# No module imports one above it, and no import circle (docs/architecture.md).
python3 scripts/imports.py | grep -E "^(NOTE|PROBLEM)" >&2 || true
python3 scripts/imports.py > /dev/null
python3 scripts/imports.py --self-test > /dev/null
# The end-to-end tests share the two cores with the build; two at a time keeps boots fast.
log=$(mktemp)
trap 'rm -f "$log" "$log.cp"' EXIT
# The real control plane (tests/controlplane, ~12 min cold on two cores, cached per go.sum) builds
# in the background while cargo builds and the first tests run; the tests that need it run
# `scripts/controlplane.sh build` themselves, which waits for this build. LABCTL_CONTROLPLANE=0
# leaves it out (those tests then say SKIPPED, and fail under CI=true).
cp_pid=
if [ "${LABCTL_CONTROLPLANE:-1}" = 1 ]; then
  export LABCTL_CONTROLPLANE=1
  cp_start=$(date +%s)
  scripts/controlplane.sh build >"$log.cp" 2>&1 &
  cp_pid=$!
fi
status=0
# End-to-end tests are #[ignore]d, so a plain `cargo test` lists them as ignored instead of
# passing them; here, as root, they run.
include=()
[ "$LABCTL_E2E" = 1 ] && include=(--include-ignored)
cargo test --locked -- --test-threads="${LABCTL_TEST_THREADS:-2}" "${include[@]}" "$@" 2>&1 | tee "$log" || status=$?
# Lints, after the tests (their build is the longer one): formatting, and clippy with warnings
# as errors, so the code stays clean of what clippy flags. LABCTL_LINT=0 leaves them out.
if [ "${LABCTL_LINT:-1}" = 1 ]; then
  for c in rustfmt clippy; do
    sub=${c/rustfmt/fmt}
    cargo "$sub" --version >/dev/null 2>&1 || rustup component add "$c" >/dev/null 2>&1 || true
    cargo "$sub" --version >/dev/null 2>&1 \
      || { echo "test.sh: cargo $sub is not installed (rustup component add $c)" >&2; status=1; }
  done
  if cargo fmt --version >/dev/null 2>&1 && ! cargo fmt --check; then
    echo "test.sh: cargo fmt --check failed (run cargo fmt)" >&2; status=1
  fi
  if cargo clippy --version >/dev/null 2>&1 && ! cargo clippy --locked --quiet --all-targets -- -D warnings; then
    echo "test.sh: cargo clippy found warnings (above)" >&2; status=1
  fi
fi
# What ran, said once at the end: a skipped test passes in libtest's count, so name each one.
skipped=$(grep -c '^SKIPPED ' "$log" || true)
# The end-to-end tests are the #[ignore = "end-to-end …"] ones; count those that passed or failed
# and did not say SKIPPED.
e2e_names=$(grep -h -A1 '^#\[ignore = "end-to-end' tests/*.rs | sed -nE 's/^fn ([a-z0-9_]+)\(\).*/\1/p')
e2e_ran=$(grep -E '^test [a-z0-9_]+::[a-z0-9_]+ \.\.\. (ok|FAILED)$' "$log" \
  | sed -E 's/^test ([^ ]+) .*/\1/' \
  | grep -xE "[a-z0-9_]+::($(echo $e2e_names | tr ' ' '|'))" \
  | grep -vxF -f <(sed -nE 's/^SKIPPED ([^:]+(::[^:]+)*): .*/\1/p' "$log") | wc -l || true)
if [ -n "$cp_pid" ]; then
  if wait "$cp_pid"; then
    echo "test.sh: control plane build: $(tail -n 1 "$log.cp") (waited $(( $(date +%s) - cp_start )) s from start)"
  else
    echo "test.sh: the control plane build failed:" >&2; tail -n 30 "$log.cp" >&2; status=1
  fi
fi
echo "test.sh: end-to-end tests run on test hosts: $e2e_ran of $(echo $e2e_names | wc -w) (LABCTL_E2E=$LABCTL_E2E); tests SKIPPED: $skipped"
grep '^SKIPPED ' "$log" >&2 || true
exit "$status"
