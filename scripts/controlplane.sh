#!/usr/bin/env bash
# A real Kubernetes control plane for tests, built from the Go modules pinned in tests/controlplane:
# kine on SQLite (k3s's datastore), kube-apiserver, kube-controller-manager, kube-scheduler and kwok
# in the kubelet's place (Nodes Ready, pods Running, no container runtime). Loopback only.
#
#   scripts/controlplane.sh build     build once per machine into
#                                     ~/.cache/labctl/controlplane/<sha256>/bin/controlplane
#   scripts/controlplane.sh bin       print that binary's path (exit 1 if not built)
#   scripts/controlplane.sh up DIR    start everything; DIR/kubeconfig is an admin kubeconfig,
#                                     DIR/pids the started PIDs, DIR/*.log their logs
#   scripts/controlplane.sh down DIR  stop exactly the PIDs in DIR/pids
#   scripts/controlplane.sh ca DIR    make DIR/pki/ca.{key,crt} unless there (`up` does too)
#   scripts/controlplane.sh node-json NAME [LABELS] [TAINTS]
#                                     print a Node as a kubelet registers it (for kwok)
#
# `up` takes its settings from CP_* variables (see cmd_up); the k3s stand-in
# (tests/standins/k3s) uses them to run this control plane on a test host as `k3s server`.
#
# Upstream docs relied on: kine's README (github.com/k3s-io/kine: standalone kine for any
# Kubernetes, SQLite for a single instance); kwok's "kwok in a cluster" and Stages docs
# (kwok.sigs.k8s.io: kwok does nothing until Stages exist; a fake Node is one annotated
# kwok.x-k8s.io/node=fake); Kubernetes "PKI certificates and requirements"
# (kubernetes.io/docs/setup/best-practices/certificates: the client certs each component needs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MOD="$ROOT/tests/controlplane"
GO_MIN=1.26
# The toolchain fetched when no Go >= $GO_MIN is installed (see ensure_go).
GO_TOOLCHAIN=go1.26.8
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/labctl"

die() { echo "controlplane: $*" >&2; exit 1; }
say() { echo "controlplane: $*" >&2; }

# The cache key covers the glue as well as go.sum: a changed main.go or go.mod must rebuild too.
cache_dir() {
  local key
  key=$( { cat "$MOD/go.sum" "$MOD/go.mod" "$MOD"/*.go; ldflags; } | sha256sum | cut -c1-64)
  echo "$CACHE_ROOT/controlplane/$key"
}

go_ok() { # go_ok GO: true when GO runs and is at least $GO_MIN
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  [ "$(printf '%s\n%s\n' "$GO_MIN" "$v" | sort -V | head -1)" = "$GO_MIN" ]
}

# Prints the go to build with. k8s.io/kubernetes v1.36 needs Go >= 1.26; Debian 12's golang-go is
# 1.19 and cannot build it, but any go can download the official toolchain as a module from the Go
# module proxy (golang.org/toolchain, checked against sum.golang.org, as GOTOOLCHAIN does).
ensure_go() {
  local g
  for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go "$CACHE_ROOT/$GO_TOOLCHAIN/bin/go"; do
    if [ -n "$g" ] && [ -x "$g" ] && go_ok "$g"; then echo "$g"; return; fi
  done
  local client
  client=$(command -v go 2>/dev/null || true)
  if [ -z "$client" ]; then
    [ -x /usr/lib/go-1.19/bin/go ] && client=/usr/lib/go-1.19/bin/go
  fi
  if [ -z "$client" ]; then
    if [ "$(id -u)" != 0 ]; then
      die "no Go found; Go >= $GO_MIN is needed (Debian 12's golang-go is 1.19, too old for k8s 1.36).
  Install one, e.g.: sudo apt-get install golang-go && $0 build   (this script then fetches $GO_TOOLCHAIN
  from the Go module proxy), or put a Go >= $GO_MIN on PATH"
    fi
    say "no Go found: installing Debian's golang-go (1.19) only to fetch $GO_TOOLCHAIN from the Go module proxy"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends golang-go >/dev/null
    client=$(command -v go) || die "golang-go installed but no go on PATH"
  fi
  say "Go $("$client" env GOVERSION 2>/dev/null || echo '?') at $client is older than $GO_MIN: fetching $GO_TOOLCHAIN"
  local mod="golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')"
  local tmp
  tmp=$(mktemp -d)
  # A throwaway module cache: module files are read-only and unexecutable there.
  local dir
  dir=$(cd "$tmp" && GOMODCACHE="$tmp/mod" GOFLAGS=-modcacherw GO111MODULE=on "$client" mod download -json "$mod" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] && [ -f "$dir/bin/go" ] || { rm -rf "$tmp"; die "could not download $mod from the Go module proxy"; }
  rm -rf "$CACHE_ROOT/$GO_TOOLCHAIN"
  mkdir -p "$CACHE_ROOT"
  cp -a "$dir" "$CACHE_ROOT/$GO_TOOLCHAIN"
  rm -rf "$tmp"
  # Module zips carry no file modes; the toolchain's own switcher sets them the same way.
  chmod -R u+w "$CACHE_ROOT/$GO_TOOLCHAIN"
  chmod +x "$CACHE_ROOT/$GO_TOOLCHAIN"/bin/* "$CACHE_ROOT/$GO_TOOLCHAIN"/pkg/tool/*/*
  go_ok "$CACHE_ROOT/$GO_TOOLCHAIN/bin/go" || die "$CACHE_ROOT/$GO_TOOLCHAIN/bin/go does not run"
  echo "$CACHE_ROOT/$GO_TOOLCHAIN/bin/go"
}

# The version the components report (/version, `kubectl version`), stamped as Kubernetes' own
# build does (hack/lib/version.sh); unstamped they say v0.0.0-master, which charts' kubeVersion
# constraints refuse. The version is k8s.io/kubernetes's in go.mod; "+labctl" marks this build,
# as "+k3s1" marks k3s's.
ldflags() {
  local v
  v=$(sed -n 's/^[[:space:]]*k8s\.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$MOD/go.mod" | head -n 1)
  [ -n "$v" ] || die "no k8s.io/kubernetes version in $MOD/go.mod"
  local minor=${v#v1.}; minor=${minor%%.*}
  local p=k8s.io/component-base/version
  echo "-s -w -X $p.gitVersion=$v+labctl -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
}

cmd_build() {
  local out bin go
  out=$(cache_dir)
  bin="$out/bin/controlplane"
  if [ -x "$bin" ]; then
    say "already built: $bin"
    return
  fi
  # One build at a time: scripts/test.sh starts one in the background, and a test that needs the
  # binary runs `build` too, which waits here for it instead of building twice.
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/controlplane.lock"
  if ! flock -n 9; then
    say "another build is running: waiting for it"
    flock 9
  fi
  if [ -x "$bin" ]; then
    say "built meanwhile: $bin"
    return
  fi
  go=$(ensure_go)
  # kine's SQLite driver is github.com/mattn/go-sqlite3 under cgo (as in k3s); without cgo kine
  # silently switches to modernc.org/sqlite, so cgo is required, not optional.
  command -v gcc >/dev/null 2>&1 || {
    [ "$(id -u)" = 0 ] || die "gcc is needed (cgo, for kine's SQLite driver): sudo apt-get install gcc libc6-dev"
    say "installing gcc (cgo, for kine's SQLite driver)"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
  }
  say "building $bin with $("$go" env GOVERSION) (cold: ~12 min on 2 idle cores, 33 min measured on a busy machine; see tests/controlplane/README.md)"
  mkdir -p "$out/bin"
  local tmpbin="$out/bin/.controlplane.$$"
  # GOTOOLCHAIN=local: use exactly this go, never switch silently. -trimpath and -s -w keep the
  # binary reproducible and smaller; no -race.
  (cd "$MOD" && GOTOOLCHAIN=local CGO_ENABLED=1 GOFLAGS="${GOFLAGS:-} -mod=readonly" \
     nice -n 10 "$go" build -trimpath -ldflags="$(ldflags)" -o "$tmpbin" .) \
    || { rm -f "$tmpbin"; die "go build failed"; }
  mv "$tmpbin" "$bin"
  local c
  for c in kine kube-apiserver kube-controller-manager kube-scheduler kwok; do
    ln -sf controlplane "$out/bin/$c"
  done
  # One build per machine: a build for an older go.sum is dead weight (~180 MB).
  find "$CACHE_ROOT/controlplane" -mindepth 1 -maxdepth 1 -type d ! -path "$out" -exec rm -rf {} +
  say "built $bin ($(du -h "$bin" | cut -f1))"
}

cmd_bin() {
  local bin
  bin="$(cache_dir)/bin/controlplane"
  [ -x "$bin" ] || die "not built: run scripts/controlplane.sh build"
  echo "$bin"
}

free_ports() { # free_ports N: N distinct free TCP ports on 127.0.0.1
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# cert NAME CN [O] [SAN]: a key and a certificate signed by DIR/pki/ca. Kept when it exists with
# the same SANs, as k3s keeps its certificates across restarts.
cert() {
  local name=$1 cn=$2 org=${3:-} san=${4:-} subj ext
  if [ -s "$PKI/$name.crt" ] && [ "$(cat "$PKI/$name.san" 2>/dev/null)" = "$san" ]; then return; fi
  subj="/CN=$cn"; [ -n "$org" ] && subj="/O=$org$subj"
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  ext="$PKI/$name.ext"
  if [ -n "$san" ]; then
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" > "$ext"
  else
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > "$ext"
  fi
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  printf '%s' "$san" > "$PKI/$name.san"
  rm -f "$PKI/$name.csr" "$ext"
}

kubeconfig() { # kubeconfig FILE CERTNAME [NAME]: NAME names the cluster, user and context
  local n=${3:-controlplane}
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $n
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $n
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: $n
  context: {cluster: $n, user: $n}
current-context: $n
EOF
  chmod 600 "$1"
}

start() { # start NAME ARGS...: runs the binary as component NAME in the background, logs to DIR/NAME.log
  local name=$1; shift
  (cd "$DIR" && exec "$BIN" "$name" "$@" >"$DIR/$name.log" 2>&1 </dev/null) &
  echo "$name $!" >> "$DIR/pids"
}

# Requests go through the real kubectl: a minimal Debian test host has neither curl nor python.
k() { "$KUBECTL" --kubeconfig "$DIR/kubeconfig" --request-timeout=10s "$@"; }

wait_for() { # wait_for WHAT SECONDS CMD...: retries CMD until it succeeds; on timeout, fail naming WHAT
  local what=$1 secs=$2 i; shift 2
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  say "timed out after ${secs}s waiting for $what; logs in $DIR"
  cmd_down "$DIR" || true
  exit 1
}

alive() { # alive NAME: the component is still running
  local pid
  pid=$(awk -v n="$1" '$1 == n {print $2}' "$DIR/pids")
  kill -0 "$pid" 2>/dev/null || { say "$1 exited; see $DIR/$1.log:"; tail -20 "$DIR/$1.log" >&2; return 1; }
}

port_open() { exec 3<>"/dev/tcp/127.0.0.1/$1"; }

# node_json NAME [LABELS] [TAINTS]: a Node as a kubelet registers it, managed by kwok (the
# annotation), with room for a lab's worth of pods. LABELS: more JSON members ('"a":"b",...');
# TAINTS: JSON taint objects ('{"key":"k","value":"v","effect":"NoSchedule"},...'). Its address
# is where its kubelet answers, as a kubelet registers it: kwok plays every kubelet, at
# 127.0.0.1 on the machine of the API server (exec and logs go there).
node_json() {
  printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"%s","annotations":{"kwok.x-k8s.io/node":"fake","node.alpha.kubernetes.io/ttl":"0"},"labels":{"kubernetes.io/hostname":"%s","kubernetes.io/os":"linux","kubernetes.io/arch":"amd64","type":"kwok"%s}},"spec":{"taints":[%s]},"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"},{"type":"Hostname","address":"%s"}],"capacity":{"cpu":"32","memory":"256Gi","pods":"110"},"allocatable":{"cpu":"32","memory":"256Gi","pods":"110"}}}' \
    "$1" "$1" "${2:+,$2}" "${3:-}" "$1"
}

node_ready() { # node_ready NAME
  [ "$(k get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# Settings, from the environment; the defaults suit a test on this machine (loopback, free ports),
# the k3s stand-in on a test host sets them as k3s would:
#   CP_BIN, CP_KUBECTL   the control plane binary and kubectl (the built one, $LABCTL_KUBECTL)
#   CP_BIND              the API server's bind address (127.0.0.1)
#   CP_API_PORT          its port; when set, the others take k3s's and the kubelet's fixed ports
#                        (kine 2379, controller-manager 10257, scheduler 10259, kwok 10250);
#                        otherwise all take free ports
#   CP_SANS              more subjectAltNames for its serving cert, e.g. IP:10.200.0.1
#   CP_TOKEN_FILE        a static token file (token,user,uid,"groups"): how agents join
#   CP_NODE              the first Node (kwok-node-0); empty registers none
#   CP_NODE_LABELS, CP_NODE_TAINTS   that Node's labels and taints (see node_json)
#   CP_KWOK_CONFIG       a file of more kwok configuration (Exec, ClusterExec), appended
cmd_up() {
  DIR=${1:?usage: controlplane.sh up DIR}
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  [ ! -s "$DIR/pids" ] || die "$DIR/pids exists: run 'controlplane.sh down $DIR' first"
  BIN=${CP_BIN:-$(cmd_bin)}
  KUBECTL=${CP_KUBECTL:-${LABCTL_KUBECTL:-kubectl}}
  command -v "$KUBECTL" >/dev/null 2>&1 || die "no kubectl at '$KUBECTL' (set CP_KUBECTL or LABCTL_KUBECTL)"
  PKI="$DIR/pki"
  mkdir -p "$PKI"
  local ports bind=${CP_BIND:-127.0.0.1} node=${CP_NODE-kwok-node-0}
  if [ -n "${CP_API_PORT:-}" ]; then
    KINE_PORT=2379 API_PORT=$CP_API_PORT CM_PORT=10257 SCHED_PORT=10259 KWOK_PORT=10250
  else
    read -r KINE_PORT API_PORT CM_PORT SCHED_PORT KWOK_PORT <<<"$(free_ports 5)"
  fi
  ports="kine=$KINE_PORT apiserver=$API_PORT controller-manager=$CM_PORT scheduler=$SCHED_PORT kwok=$KWOK_PORT"

  # A CA, the API server's serving cert (127.0.0.1, the kubernetes Service's first IP, CP_SANS),
  # one client cert per component with the identity RBAC's default roles expect, the API server's
  # client cert for kubelets (kwok: exec, logs), kwok's serving cert and the service account keys.
  cmd_ca "$DIR"
  cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:10.43.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local${CP_SANS:+,$CP_SANS}"
  cert admin admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert apiserver-kubelet kube-apiserver-kubelet-client system:masters
  # kwok writes Node and Pod status as every kubelet would; one kwok for all fake Nodes cannot be
  # a single system:node:NAME, so it runs as an admin, as kwokctl's own clusters do.
  cert kwok kwok system:masters
  cert kwok-serving kwok "" "IP:127.0.0.1,DNS:localhost"
  if [ ! -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  kubeconfig "$DIR/kubeconfig" admin
  kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager
  kubeconfig "$DIR/scheduler.kubeconfig" scheduler
  kubeconfig "$DIR/kwok.kubeconfig" kwok
  : > "$DIR/pids"
  echo "$ports" > "$DIR/ports"

  # kine with no --endpoint is what a single k3s server runs: SQLite at ./db/state.db (under DIR).
  start kine --listen-address "127.0.0.1:$KINE_PORT" --metrics-bind-address 0
  wait_for "kine on 127.0.0.1:$KINE_PORT" 30 port_open "$KINE_PORT"
  # k3s's defaults for the Service range (10.43.0.0/16) and the NodePort range. No endpoint
  # reconciler: the API server would publish its 127.0.0.1 address in the `kubernetes` Endpoints,
  # which Endpoints validation refuses (loopback), every 10 s; no real pod ever calls it here.
  start kube-apiserver \
    --etcd-servers "http://127.0.0.1:$KINE_PORT" \
    --bind-address "$bind" --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet.crt" --kubelet-client-key "$PKI/apiserver-kubelet.key" \
    --kubelet-preferred-address-types InternalIP \
    ${CP_TOKEN_FILE:+--token-auth-file "$CP_TOKEN_FILE"} \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.43.0.0/16 --service-node-port-range 30000-32767 \
    --authorization-mode Node,RBAC --allow-privileged=true --profiling=false \
    --endpoint-reconciler-type none
  wait_for "the API server's /readyz" 120 k get --raw /readyz
  start kube-controller-manager \
    --kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$CM_PORT" --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true --service-cluster-ip-range 10.43.0.0/16 --profiling=false
  start kube-scheduler \
    --kubeconfig "$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false
  "$BIN" kwok-stages > "$DIR/kwok.yaml"
  # kwok answers exec and logs where the API server looks for a kubelet (the Node's InternalIP
  # and kubelet port), over TLS, as a kubelet does. It renews each Node's Lease as a kubelet does
  # (kwokctl's default, 40 s): the heartbeat stage updates Node status only every ~10 min and
  # counts on the Lease, without which the node lifecycle controller marks Nodes unknown after
  # 50 s and their pods NotReady for good (kwok never readies a pod twice). CP_KWOK_CONFIG: more kwok configuration.
  [ -z "${CP_KWOK_CONFIG:-}" ] || cat "$CP_KWOK_CONFIG" >> "$DIR/kwok.yaml"
  start kwok \
    --config "$DIR/kwok.yaml" --kubeconfig "$DIR/kwok.kubeconfig" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address "127.0.0.1:$KWOK_PORT" --node-ip 127.0.0.1 --node-port "$KWOK_PORT" \
    --node-lease-duration-seconds 40 \
    --tls-cert-file "$PKI/kwok-serving.crt" --tls-private-key-file "$PKI/kwok-serving.key" \
    --cidr 10.42.0.0/24

  if [ -n "$node" ]; then
    k get node "$node" >/dev/null 2>&1 \
      || node_json "$node" "${CP_NODE_LABELS:-}" "${CP_NODE_TAINTS:-}" | k create -f - >/dev/null \
      || { cmd_down "$DIR"; die "could not register the Node $node"; }
    wait_for "kwok to make $node Ready" 60 node_ready "$node"
  fi
  # The controller manager makes the default ServiceAccount that every pod needs.
  wait_for "the default ServiceAccount" 60 k get -n default serviceaccount default
  local c
  for c in kine kube-apiserver kube-controller-manager kube-scheduler kwok; do alive "$c" || { cmd_down "$DIR"; exit 1; }; done
  say "up: $ports; KUBECONFIG=$DIR/kubeconfig"
}

cmd_ca() { # cmd_ca DIR: DIR/pki/ca.{key,crt}, made once (the k3s stand-in needs its hash first)
  local pki=${1:?usage: controlplane.sh ca DIR}/pki
  mkdir -p "$pki"
  [ -s "$pki/ca.crt" ] && return
  openssl genrsa -out "$pki/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=labctl-controlplane-ca" -days 3650 -sha256 \
    -out "$pki/ca.crt" 2>/dev/null
}

cmd_down() {
  local dir=${1:?usage: controlplane.sh down DIR} name pid i
  [ -f "$dir/pids" ] || { say "no $dir/pids: nothing to stop"; return 0; }
  # Reverse start order: kwok and the controllers before the API server, kine last.
  tac "$dir/pids" | while read -r name pid; do
    # A recycled PID is not ours: only stop a process still running this control plane's binary.
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "controlplane $name"; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$dir/pids"
}

case "${1:-}" in
  build) cmd_build ;;
  bin) cmd_bin ;;
  up) shift; cmd_up "$@" ;;
  node-json) shift; node_json "$@" ;;
  ca) shift; cmd_ca "$@" ;;
  down) shift; cmd_down "$@" ;;
  *) echo "usage: $0 build | bin | up DIR | down DIR | ca DIR | node-json NAME [LABELS] [TAINTS]" >&2; exit 2 ;;
esac
