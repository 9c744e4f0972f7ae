#!/usr/bin/env bash
# Fuzz labctl's input loaders with cargo fuzz (libFuzzer), outside the main build.
#
#   fuzz/run.sh TARGET [SECONDS]     # one target (see fuzz_targets/), default 300 s
#   fuzz/run.sh all [SECONDS]        # every target in turn
#   fuzz/run.sh cmin TARGET          # minimize that target's corpus in place
#
# This crate (fuzz/Cargo.toml) depends on the labctl library (`labctl = { path = ".." }`), so the
# fuzzer always builds today's code; its entry points are src/lib.rs. Needs nightly features:
# RUSTC_BOOTSTRAP=1 on stable.
# New crashes land in fuzz/artifacts/TARGET/; copy them to fuzz/regressions/TARGET/ and the
# normal test run replays them (fuzz/src/lib.rs is also a module of tests/main.rs).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

targets() { ls fuzz_targets | sed 's/\.rs$//'; }

case "${1:-}" in
  all)
    for t in $(targets); do "$0" "$t" "${2:-300}"; done ;;
  cmin)
    cargo fuzz cmin -s none "$2" "corpus/$2" ;;
  "")
    echo "usage: fuzz/run.sh TARGET|all [SECONDS] | cmin TARGET; targets: $(targets | tr '\n' ' ')" >&2; exit 2 ;;
  *)
    mkdir -p "corpus/$1"
    cargo fuzz run -s none "$1" "corpus/$1" -- -max_total_time="${2:-300}" -timeout=1 -rss_limit_mb=100 \
      -max_len=65536 -print_final_stats=1 ;;
esac
