#!/bin/bash
# volume-restore.sh (installed as labctl-volume-restore): put a PVC's off-site archive (made by
# volume-backup.sh, pushed by backup-offsite.sh) back onto a volume, and prove it: after the
# restore, `tar --compare` finds the folder identical to the archive (contents, modes, owners,
# times). Run as root on the node that holds the target volume (the k3s server).
#
#   RESTORE_PVC     NAMESPACE/NAME of the PVC whose archive to restore (required)
#   RESTORE_INTO    NAMESPACE/NAME of the PVC to restore onto (default RESTORE_PVC). It must be
#                   Bound to a local volume on this node, and no pod may be using it (scale its
#                   workload to 0 first). What its folder held is moved aside, whole, to
#                   FOLDER.before-restore-STAMP.
#   RESTORE_DIR     instead of a PVC: a plain folder that does not exist yet or is empty
#   RESTORE_OBJECT  a named off-site object (NAMESPACE_NAME-STAMP.tar.gz.age) instead of the
#                   newest; RESTORE_FILE a local .tar.gz.age file instead of S3
#   AGE_IDENTITY    your age identity file (required: only the recipients can decrypt)
#   VOLUME_BACKUP_NODE, VOLUME_BACKUP_KUBECTL  as for volume-backup.sh
#   S3: the settings of backup-offsite-lib.sh (on the server: . /etc/labctl-backup/offsite.env).
# Everything is checked (decryption, gzip, no absolute or `..` path in the archive, the target)
# before the target is touched; a tampered, truncated or foreign archive changes nothing.
# The archive is decrypted on the fly each time it is read (check, unpack, compare): no
# decrypted copy of it is ever written to disk, in /tmp or anywhere else. The encrypted file
# fetched from S3 goes to a work folder in $TMPDIR (default /tmp), removed on every exit.
set -euo pipefail

die() { echo "volume-restore: FAILED: $*" >&2; exit 1; }
. "$(dirname "$0")/backup-offsite-lib.sh"

VOLUME_BACKUP_NODE=${VOLUME_BACKUP_NODE:-$(uname -n)}
VOLUME_BACKUP_KUBECTL=${VOLUME_BACKUP_KUBECTL:-k3s kubectl}
ref=${RESTORE_PVC:-}
valid_pvc_ref "$ref" || die "set RESTORE_PVC to the PVC whose archive to restore, as NAMESPACE/NAME"
[ -n "${AGE_IDENTITY:-}" ] || die "set AGE_IDENTITY to your age identity file"
for tool in tar gzip age; do command -v $tool >/dev/null 2>&1 || die "$tool is not installed"; done
into=
if [ -n "${RESTORE_DIR:-}" ]; then
  [ -z "${RESTORE_INTO:-}" ] || die "set RESTORE_INTO or RESTORE_DIR, not both"
  case $RESTORE_DIR in /*) ;; *) die "RESTORE_DIR must be an absolute path" ;; esac
else
  into=${RESTORE_INTO:-$ref}
  valid_pvc_ref "$into" || die "RESTORE_INTO must be NAMESPACE/NAME"
fi

umask 077
work=$(mktemp -d "${TMPDIR:-/tmp}/volume-restore.XXXXXX")
staging=
trap 'rm -rf "$work"; [ -z "$staging" ] || rm -rf "$staging"' EXIT
# A signal exits 128+N through the EXIT trap: no work or staging folder left behind.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
k() { $VOLUME_BACKUP_KUBECTL "$@"; }

# 1. The archive: fetched, decrypted, whole, with only relative paths.
series=$(pvc_series "$ref")
if [ -n "${RESTORE_FILE:-}" ]; then
  enc=$RESTORE_FILE
else
  offsite_check
  enc=$(fetch_newest volumes "$work" "${RESTORE_OBJECT:-}" "$series") || exit 1
fi
case $(basename "$enc") in "$series"-*.tar.gz.age) ;; *) die "$(basename "$enc") is not an archive of $ref" ;; esac
echo "volume-restore: using $(basename "$enc")"
[ -r "$AGE_IDENTITY" ] || die "cannot read the age identity $AGE_IDENTITY (AGE_IDENTITY)"
# The archive in clear, to stdout only. age authenticates every chunk: a tampered or truncated
# file fails (exit 1) before its bad chunk reaches the reader.
plain() { age -d -i "$AGE_IDENTITY" "$enc" 2>"$work/age.err"; }
# One whole read: decrypts, is one whole gzip stream, is a tar archive; its names for the check.
# A stage killed by SIGPIPE (141) only saw a later stage stop early: the first other failure
# is the cause.
st=(0 0 0)
plain | gzip -dc 2>"$work/gzip.err" | tar -tf - >"$work/list" 2>"$work/tar.err" || st=("${PIPESTATUS[@]}")
case ${st[0]} in 0 | 141) ;; *) die "cannot decrypt $(basename "$enc"): it is tampered, truncated, or not for this key ($(head -c 300 "$work/age.err"))" ;; esac
case ${st[1]} in 0 | 141) ;; *) die "$(basename "$enc") decrypts but is not a whole gzip stream ($(head -c 300 "$work/gzip.err"))" ;; esac
[ "${st[2]}" = 0 ] || die "$(basename "$enc") is not a tar archive ($(head -c 300 "$work/tar.err"))"
! grep -q -e '^/' -e '\(^\|/\)\.\.\(/\|$\)' "$work/list" || die "$(basename "$enc") holds absolute or .. paths: refused"
entries=$(wc -l <"$work/list")

# 2. The target folder, checked before anything changes.
if [ -n "$into" ]; then
  ns=${into%%/*} pvc=${into#*/}
  line=$(k get pvc -n "$ns" "$pvc" -o jsonpath='{.status.phase}{"\t"}{.spec.volumeName}' 2>"$work/err") ||
    die "PVC $into: $(head -c 300 "$work/err") (create it and bind it first: docs/backups.md)"
  phase=$(printf '%s\n' "$line" | cut -f1) pv=$(printf '%s\n' "$line" | cut -f2)
  [ "$phase" = Bound ] && [ -n "$pv" ] || die "PVC $into is not bound (phase ${phase:-unknown}): bind it first (docs/backups.md)"
  vline=$(k get pv "$pv" -o jsonpath="$PV_PATH_NODE_JSONPATH" 2>"$work/err") ||
    die "volume $pv: $(head -c 300 "$work/err")"
  target=$(printf '%s\n' "$vline" | cut -f1) node=$(printf '%s\n' "$vline" | cut -f2)
  [ -n "$target" ] || die "volume $pv of $into is not a hostPath or local volume"
  [ -z "$node" ] || [ "$node" = "$VOLUME_BACKUP_NODE" ] || die "volume $pv of $into is on node $node: run this there"
  # A pod that may still write would mix its writes with the restored files.
  users=$(k get pods -n "$ns" -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\t"}{.spec.volumes[*].persistentVolumeClaim.claimName}{"\n"}{end}' 2>"$work/err") ||
    die "cannot list the pods of $ns: $(head -c 300 "$work/err")"
  busy=$(printf '%s\n' "$users" | awk -F'\t' -v c="$pvc" '$2 != "Succeeded" && $2 != "Failed" { n = split($3, a, " "); for (i = 1; i <= n; i++) if (a[i] == c) print $1 }')
  [ -z "$busy" ] || die "PVC $into is in use by pod(s) $(echo $busy): scale their workload to 0 first (docs/backups.md)"
else
  target=$RESTORE_DIR
  [ ! -e "$target" ] || [ -z "$(ls -A "$target")" ] || die "$target is not empty: choose a new RESTORE_DIR"
fi

# 3. Unpacked beside the target (one file system), then put in place by rename.
parent=$(dirname "$target")
mkdir -p "$parent"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
staging=$(mktemp -d "$parent/.$(basename "$target").restore-$stamp.XXXXXX")
plain | tar -xzf - -C "$staging" --numeric-owner --acls --xattrs --xattrs-include='*' \
  --same-permissions --same-owner 2>"$work/err" || die "unpacking failed: $(cat "$work/err" "$work/age.err" | head -c 300)"
aside=
if [ -e "$target" ]; then
  if [ -n "$into" ] && [ -n "$(ls -A "$target")" ]; then
    aside="$target.before-restore-$stamp"
    mv "$target" "$aside"
  else
    rmdir "$target"
  fi
fi
mv "$staging" "$target"
staging=
# The archive's own `.` entry carries the volume folder's mode and owner: now the target's.
plain | tar --compare -zf - -C "$target" --numeric-owner >"$work/diff" 2>&1 ||
  die "$target differs from the archive after the restore: $(head -c 500 "$work/diff")"
echo "volume-restore: ok: $(basename "$enc") restored into ${into:+PVC $into, }$target ($entries entries, identical to the archive)${aside:+; what was there is in $aside}"
