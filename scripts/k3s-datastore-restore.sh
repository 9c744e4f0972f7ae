#!/bin/bash
# k3s-datastore-restore.sh: put a k3s server's SQLite datastore and its token back from a backup
# archive, on the server, as root: check the archive, stop k3s, move the current db folder and
# token aside, put the archived db folder (whole: never beside stale -wal/-shm files) and token in
# place, start k3s, verify.
#
#   (no argument)      the newest off-site archive (S3 settings as in backup-offsite-lib.sh;
#                      on the server they are in /etc/labctl-backup/offsite.env)
#   RESTORE_OBJECT     a named off-site object instead, e.g. k3s-datastore-20260101T021500Z.tar.gz.age
#   RESTORE_FILE       a local archive instead: .tar.gz.age (encrypted) or .tar.gz (a local copy)
#   AGE_IDENTITY       your age identity file (needed for .age archives)
#   K3S_SERVER_DIR     default /var/lib/rancher/k3s/server;  K3S_SERVICE default k3s
#   K3S_TOKEN_FILE     the token file k3s is configured with (default /etc/rancher/k3s/token):
#                      it must hold the archive's token, else k3s could not read the datastore
#   RESTORE_VERIFY_SECONDS  how long to wait for the API after the start (default 120)
# Everything is checked (decryption, gzip, the archive's contents, SQLite integrity, the token)
# BEFORE k3s is stopped: a bad archive changes nothing. The old datastore stays in
# K3S_SERVER_DIR/db.before-restore-STAMP until you delete it.
set -euo pipefail

die() { echo "k3s-datastore-restore: FAILED: $*" >&2; exit 1; }
. "$(dirname "$0")/backup-offsite-lib.sh"

K3S_SERVER_DIR=${K3S_SERVER_DIR:-/var/lib/rancher/k3s/server}
K3S_SERVICE=${K3S_SERVICE:-k3s}
K3S_TOKEN_FILE=${K3S_TOKEN_FILE:-/etc/rancher/k3s/token}
RESTORE_VERIFY_SECONDS=${RESTORE_VERIFY_SECONDS:-120}
[ "$(id -u)" = 0 ] || die "run as root"
for tool in sqlite3 tar gzip systemctl; do command -v $tool >/dev/null 2>&1 || die "$tool is not installed"; done
[ -d "$K3S_SERVER_DIR" ] || die "no k3s server folder $K3S_SERVER_DIR"

umask 077
work=$(mktemp -d /tmp/k3s-datastore-restore.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ -n "${RESTORE_FILE:-}" ]; then
  src=$RESTORE_FILE
else
  offsite_check
  src=$(fetch_newest k3s-datastore "$work" "${RESTORE_OBJECT:-}") || exit 1
fi
echo "k3s-datastore-restore: using $(basename "$src")"
case $src in
  *.age)
    [ -n "${AGE_IDENTITY:-}" ] || die "set AGE_IDENTITY to your age identity file to decrypt $(basename "$src")"
    decrypt_to "$src" "$work/archive.tar.gz" "$AGE_IDENTITY" ;;
  *) cp "$src" "$work/archive.tar.gz" ;;
esac
gzip -t "$work/archive.tar.gz" 2>/dev/null || die "$(basename "$src") is not a whole gzip stream"
mkdir "$work/x"
tar -C "$work/x" -xzf "$work/archive.tar.gz" || die "cannot unpack $(basename "$src")"
# Exactly what k3s-datastore-backup.sh writes: db/ with state.db, and the token.
extra=$(cd "$work/x" && find . -mindepth 1 ! -path ./db ! -path ./db/state.db ! -path ./token | head -n 3)
[ -z "$extra" ] || die "the archive holds unexpected entries: $extra"
[ -f "$work/x/db/state.db" ] && [ -f "$work/x/token" ] || die "the archive lacks db/state.db or the token"
check=$(sqlite3 "$work/x/db/state.db" 'PRAGMA integrity_check;' 2>&1) || die "the archived state.db cannot be read: $check"
[ "$check" = ok ] || die "the archived state.db fails integrity_check: $check"

# k3s keeps the token as K10<ca-hash>::server:<token>; the configured file holds <token> or all.
archived=$(cat "$work/x/token")
if [ -f "$K3S_TOKEN_FILE" ]; then
  configured=$(cat "$K3S_TOKEN_FILE")
  if [ "$configured" != "$archived" ] && [ "$configured" != "${archived##*::server:}" ]; then
    die "$K3S_TOKEN_FILE holds a different token than the archive: k3s would refuse the restored
  datastore. Set vault_k3s_token to the archive's token (the part after '::server:' in its
  'token' file) and run labctl apply for the k3s role first. Nothing was changed."
  fi
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
aside="$K3S_SERVER_DIR/db.before-restore-$stamp"
echo "k3s-datastore-restore: stopping $K3S_SERVICE"
systemctl stop "$K3S_SERVICE" || die "cannot stop $K3S_SERVICE"
if [ -d "$K3S_SERVER_DIR/db" ]; then mv "$K3S_SERVER_DIR/db" "$aside"; fi
if [ -f "$K3S_SERVER_DIR/token" ]; then cp -p "$K3S_SERVER_DIR/token" "$aside.token"; fi
# The whole folder, placed by one rename: no old -wal/-shm can sit beside the restored db.
cp -a "$work/x/db" "$K3S_SERVER_DIR/.db.restoring"
mv "$K3S_SERVER_DIR/.db.restoring" "$K3S_SERVER_DIR/db"
install -m 0600 "$work/x/token" "$K3S_SERVER_DIR/token"
echo "k3s-datastore-restore: datastore and token in place (previous: $aside); starting $K3S_SERVICE"
systemctl start "$K3S_SERVICE" || die "$K3S_SERVICE does not start with the restored datastore (previous one in $aside): journalctl -u $K3S_SERVICE"

# Verify: the service stays up, and the API answers when kubectl is there.
deadline=$((SECONDS + RESTORE_VERIFY_SECONDS))
while :; do
  if systemctl is-active --quiet "$K3S_SERVICE"; then
    if ! command -v k3s >/dev/null 2>&1 || k3s kubectl get nodes >/dev/null 2>&1; then break; fi
  fi
  [ $SECONDS -lt $deadline ] || die "$K3S_SERVICE is not healthy ${RESTORE_VERIFY_SECONDS}s after the restore (previous datastore in $aside): journalctl -u $K3S_SERVICE"
  sleep 2
done
sleep 2
systemctl is-active --quiet "$K3S_SERVICE" || die "$K3S_SERVICE stopped after the restore: journalctl -u $K3S_SERVICE"
command -v k3s >/dev/null 2>&1 && k3s kubectl get nodes || echo "k3s-datastore-restore: (no k3s binary: API check skipped)"
echo "k3s-datastore-restore: ok: $(basename "$src") restored; $K3S_SERVICE is active"
