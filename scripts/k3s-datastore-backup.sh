#!/bin/sh
# k3s-datastore-backup.sh: back up k3s's SQLite datastore together with the server token, keep
# BACKUP_KEEP_DAYS of them. Run by the backups role's systemd timer on the k3s server.
#
# Why `sqlite3 .backup`: copying state.db while k3s runs (or restoring it beside stale -wal/-shm
# files) gives a corrupt database. Why the token: it also encrypts the datastore's bootstrap
# data; a datastore restored without its token is useless.
#   K3S_SERVER_DIR     default /var/lib/rancher/k3s/server
#   BACKUP_DIR         default /var/backups/k3s
#   BACKUP_KEEP_DAYS   default 7
#   BACKUP_REQUIRE_OFFSITE=1  rotation keeps archives that backup-offsite.sh has not pushed yet
#                      (no NAME.offsite marker): a failing upload never loses the local copy
# Off-site copies: backup-offsite.sh (encrypted with age, then S3). Restore:
# k3s-datastore-restore.sh (checks the archive, stops k3s, replaces db/ whole and the token,
# starts k3s, verifies).
set -eu

K3S_SERVER_DIR=${K3S_SERVER_DIR:-/var/lib/rancher/k3s/server}
BACKUP_DIR=${BACKUP_DIR:-/var/backups/k3s}
BACKUP_KEEP_DAYS=${BACKUP_KEEP_DAYS:-7}

die() { echo "k3s-datastore-backup: $*" >&2; exit 1; }

command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 is not installed (apt-get install sqlite3)"
case $BACKUP_KEEP_DAYS in '' | *[!0-9]*) die "BACKUP_KEEP_DAYS must be a whole number of days" ;; esac
[ "$BACKUP_KEEP_DAYS" -ge 1 ] || die "BACKUP_KEEP_DAYS must be at least 1"
db="$K3S_SERVER_DIR/db/state.db"
token="$K3S_SERVER_DIR/token"
[ -f "$db" ] || die "no datastore at $db (is this a k3s server with the embedded SQLite datastore?)"
[ -f "$token" ] || die "no token at $token: a datastore backup without its token cannot be restored"

# The archive holds the token: owner-only from the first byte.
umask 077
mkdir -p "$BACKUP_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d "$BACKUP_DIR/.k3s-datastore-$stamp.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/db"

# The online backup API gives a consistent copy while k3s keeps writing.
sqlite3 "$db" ".timeout 30000" ".backup '$work/db/state.db'" || die "sqlite3 .backup of $db failed"
check=$(sqlite3 "$work/db/state.db" 'PRAGMA integrity_check;') || die "cannot read the backup copy"
[ "$check" = ok ] || die "the backup copy fails integrity_check: $check"
cp -p "$token" "$work/token"

out="$BACKUP_DIR/k3s-datastore-$stamp.tar.gz"
tar -C "$work" -czf "$out.partial" db token || { rm -f "$out.partial"; die "cannot write $out"; }
gzip -t "$out.partial" || { rm -f "$out.partial"; die "$out does not read back"; }
mv -f "$out.partial" "$out"
echo "k3s-datastore-backup: $out ($(wc -c <"$out") bytes)"

find "$BACKUP_DIR" -maxdepth 1 -type f -name 'k3s-datastore-*.tar.gz' ! -name "k3s-datastore-$stamp.tar.gz" \
  -mmin +$((BACKUP_KEEP_DAYS * 1440)) | sort | while read -r f; do
  if [ "${BACKUP_REQUIRE_OFFSITE:-0}" = 1 ] && [ ! -e "$f.offsite" ]; then
    echo "k3s-datastore-backup: kept $f: not off-site yet" >&2
    continue
  fi
  rm -f "$f" "$f.offsite"
  echo "k3s-datastore-backup: rotated out $f"
done
echo "k3s-datastore-backup: ok"
