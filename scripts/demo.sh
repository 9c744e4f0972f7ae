#!/usr/bin/env bash
# The main job on the local default: build labctl, boot two disposable Debian 12 hosts, apply
# the host-level roles, then show a plan with zero drift. The hosts stay up for you to explore:
#   ./target/debug/labctl testbed status      # addresses
#   ./target/debug/labctl testbed down        # remove them
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --locked
labctl=./target/debug/labctl
$labctl testbed up --hosts "${HOSTS:-2}" --name lab
inv=.testbed/lab/inventory.yml
tags=${TAGS:-base-hardening,wireguard}
key=.testbed/lab/age.key
$labctl check site.yml -i "$inv" --vault-key "$key" --tags "$tags"
$labctl apply --yes site.yml -i "$inv" --vault-key "$key" --tags "$tags"
echo
echo "== second run: a converged lab shows zero drift =="
$labctl plan site.yml -i "$inv" --vault-key "$key" --tags "$tags"
