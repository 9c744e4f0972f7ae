#!/bin/bash
# volume-backup.sh (installed as labctl-volume-backup): archive the lab's persistent volumes, one
# tar.gz per PVC, into VOLUME_BACKUP_DIR, where backup-offsite.sh (kind `volumes`) encrypts them
# with age, pushes them off-site and rotates them like the database dumps. Run on the k3s server
# by the backups role's labctl-volume-backup.timer, before the off-site push.
#
# Which PVCs: those named in VOLUME_BACKUP_PVCS (the lab roles' volumes, from the backups role's
# volume_backup_pvcs) and every PVC labelled labctl.io/backup=true; a PVC labelled
# labctl.io/backup=false is left out even when listed. Each must be Bound to a local volume
# (hostPath or local, what k3s's local-path provisioner makes) on THIS node: the archive is the
# volume's folder. A PVC it should back up but cannot (missing, unbound, its volume on another
# node, not a local volume, the folder gone, tar failing) fails the run: every other PVC is still
# archived, then it exits 1 and writes labctl_backup_last_run_ok{kind="volume-archive"} 0 for
# node-exporter's textfile collector (alert BackupFailed). It never skips one silently.
#
# Consistency: tar reads a live folder; a file written during the read is archived as it was
# read (tar's "file changed as we read it" is logged, not fatal). Fine for volumes whose
# programs write by rename or replay a log on start (Redis's RDB/AOF, Prometheus's WAL,
# Alertmanager); PostgreSQL's volume is left to its pg_dump (see docs/backups.md).
#
#   VOLUME_BACKUP_DIR       default /var/backups/volumes
#   VOLUME_BACKUP_PVCS      "NAMESPACE/NAME ..." (default none: only the labelled ones)
#   VOLUME_BACKUP_LABEL     default labctl.io/backup (value true: in, false: out)
#   VOLUME_BACKUP_NODE      this node's Kubernetes name (default: the host name)
#   VOLUME_BACKUP_KEEP_DAYS local copies, default 2
#   VOLUME_BACKUP_MIN_FREE_PERCENT  default 10: a volume whose archive could leave less free space
#                           than this in VOLUME_BACKUP_DIR's file system fails instead (a full
#                           root disk makes the kubelet evict pods)
#   VOLUME_BACKUP_KUBECTL   default "k3s kubectl" (k3s's kubectl with its admin kubeconfig)
#   BACKUP_REQUIRE_OFFSITE=1  rotation keeps archives that backup-offsite.sh has not pushed yet
#   BACKUP_METRICS_DIR      default /var/lib/prometheus/node-exporter ("" = no metrics)
# Restore: volume-restore.sh (labctl-volume-restore).
set -euo pipefail

VOLUME_BACKUP_DIR=${VOLUME_BACKUP_DIR:-/var/backups/volumes}
VOLUME_BACKUP_PVCS=${VOLUME_BACKUP_PVCS:-}
VOLUME_BACKUP_LABEL=${VOLUME_BACKUP_LABEL:-labctl.io/backup}
VOLUME_BACKUP_NODE=${VOLUME_BACKUP_NODE:-$(uname -n)}
VOLUME_BACKUP_KEEP_DAYS=${VOLUME_BACKUP_KEEP_DAYS:-2}
VOLUME_BACKUP_MIN_FREE_PERCENT=${VOLUME_BACKUP_MIN_FREE_PERCENT:-10}
VOLUME_BACKUP_KUBECTL=${VOLUME_BACKUP_KUBECTL:-k3s kubectl}
BACKUP_METRICS_DIR=${BACKUP_METRICS_DIR-/var/lib/prometheus/node-exporter}

die() { echo "volume-backup: $*" >&2; exit 1; }
. "$(dirname "$0")/backup-offsite-lib.sh"

# The run's verdict for the alert, whatever ends it (a `die` too): 0 unless it got to the end.
ok=0
write_metric() {
  [ -n "$BACKUP_METRICS_DIR" ] || return 0
  mkdir -p "$BACKUP_METRICS_DIR" || return 0
  {
    backup_ok_help
    echo "labctl_backup_last_run_ok{kind=\"volume-archive\"} $ok"
  } >"$BACKUP_METRICS_DIR/.labctl_volume_backup.prom.tmp" &&
    chmod 0644 "$BACKUP_METRICS_DIR/.labctl_volume_backup.prom.tmp" &&
    mv -f "$BACKUP_METRICS_DIR/.labctl_volume_backup.prom.tmp" "$BACKUP_METRICS_DIR/labctl_volume_backup.prom"
}
# Whatever ends the run (the end, a `die`, systemd's stop or timeout, ^C): no half-written
# archive and no work folder left behind, the tar it was running stopped, and the verdict
# written. A signal exits 128+N, so a killed run fails (unit failed, metric 0) like any other.
work= partial= tarpid=
cleanup() {
  if [ -n "$tarpid" ]; then kill "$tarpid" 2>/dev/null || true; wait "$tarpid" 2>/dev/null || true; fi
  [ -z "$partial" ] || rm -f "$partial" || true
  write_metric || true
  [ -z "$work" ] || rm -rf "$work" || true
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in tar gzip flock; do command -v $tool >/dev/null 2>&1 || die "$tool is not installed"; done
case $VOLUME_BACKUP_KEEP_DAYS in '' | *[!0-9]*) die "VOLUME_BACKUP_KEEP_DAYS must be a whole number of days" ;; esac
[ "$VOLUME_BACKUP_KEEP_DAYS" -ge 1 ] || die "VOLUME_BACKUP_KEEP_DAYS must be at least 1"
case $VOLUME_BACKUP_MIN_FREE_PERCENT in '' | *[!0-9]*) die "VOLUME_BACKUP_MIN_FREE_PERCENT must be a whole number" ;; esac
for p in $VOLUME_BACKUP_PVCS; do
  valid_pvc_ref "$p" || die "VOLUME_BACKUP_PVCS: '$p' is not NAMESPACE/NAME"
done

# Archives hold the volumes' data: owner-only from the first byte.
umask 077
mkdir -p "$VOLUME_BACKUP_DIR"
# One run at a time (the timer's and one started by hand): then every .partial already in the
# folder is a leftover of a run that could not clean up (kill -9, a crash, power loss).
exec 9<"$VOLUME_BACKUP_DIR"
flock -n 9 || { trap - EXIT; echo "volume-backup: another run is writing into $VOLUME_BACKUP_DIR: not started" >&2; exit 1; }
# The work folder holds the API server's lists (PVC names, volume paths) and tar's messages,
# no volume data; it is in the backup folder (0700, not /tmp) so that the next run finds it
# when a killed run could not remove it. The off-site push takes files only, never it.
work=$(mktemp -d "$VOLUME_BACKUP_DIR/.work.XXXXXX")
find "$VOLUME_BACKUP_DIR" -mindepth 1 -maxdepth 1 ! -newer "$work" ! -path "$work" \
  \( -type f -name '*.tar.gz.partial' -o -type d -name '.work.*' \) -print0 |
  while IFS= read -r -d '' f; do
    rm -rf "$f"
    echo "volume-backup: removed $f, left by a run that was killed"
  done
k() { $VOLUME_BACKUP_KUBECTL "$@"; }

# Every claim and every volume, one line each (tab-separated), from the API server.
k get pvc -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\t"}{.status.phase}{"\t"}{.spec.volumeName}{"\n"}{end}' \
  >"$work/pvcs" 2>"$work/err" || die "cannot list the PVCs: $(head -c 300 "$work/err")"
k get pv -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}'"$PV_PATH_NODE_JSONPATH"'{"\n"}{end}' \
  >"$work/pvs" 2>"$work/err" || die "cannot list the PVs: $(head -c 300 "$work/err")"
labelled() {
  k get pvc -A -l "$VOLUME_BACKUP_LABEL=$1" -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}' 2>"$work/err" ||
    die "cannot list the PVCs labelled $VOLUME_BACKUP_LABEL=$1: $(head -c 300 "$work/err")"
}
labelled true >"$work/in"
labelled false >"$work/out"
printf '%s\n' $VOLUME_BACKUP_PVCS | cat - "$work/in" | sed '/^$/d' | sort -u | grep -vxF -f "$work/out" >"$work/want" || true
[ -s "$work/want" ] || die "no PVC to back up: VOLUME_BACKUP_PVCS is empty and no PVC is labelled $VOLUME_BACKUP_LABEL=true"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
failed=
fail() { echo "volume-backup: $1: $2" >&2; failed="$failed $1"; }
while read -r ref; do
  line=$(awk -F'\t' -v r="$ref" '$1 == r' "$work/pvcs")
  [ -n "$line" ] || { fail "$ref" "no such PVC (listed in VOLUME_BACKUP_PVCS: remove it there, or label it $VOLUME_BACKUP_LABEL=false)"; continue; }
  phase=$(printf '%s\n' "$line" | cut -f2) pv=$(printf '%s\n' "$line" | cut -f3)
  [ "$phase" = Bound ] && [ -n "$pv" ] || { fail "$ref" "not bound to a volume (phase ${phase:-unknown})"; continue; }
  vline=$(awk -F'\t' -v v="$pv" '$1 == v' "$work/pvs")
  path=$(printf '%s\n' "$vline" | cut -f2) node=$(printf '%s\n' "$vline" | cut -f3)
  [ -n "$path" ] || { fail "$ref" "volume $pv is not a hostPath or local volume (back it up with its storage's own tool, or label the PVC $VOLUME_BACKUP_LABEL=false)"; continue; }
  if [ -n "$node" ] && [ "$node" != "$VOLUME_BACKUP_NODE" ]; then
    fail "$ref" "volume $pv is on node $node, and this job backs up the volumes of node $VOLUME_BACKUP_NODE only (see docs/backups.md: volumes on agents)"
    continue
  fi
  [ -d "$path" ] || { fail "$ref" "volume $pv: its folder $path is missing on this node"; continue; }
  # The folder's size bounds the archive's: refuse what could fill the disk past the reserve.
  need=$(du -sk "$path" 2>/dev/null | cut -f1)
  read -r size avail <<<"$(df -Pk "$VOLUME_BACKUP_DIR" | awk 'NR == 2 { print $2, $4 }')"
  if [ -z "$need" ] || [ -z "$avail" ] || [ $((avail - need)) -lt $((size * VOLUME_BACKUP_MIN_FREE_PERCENT / 100)) ]; then
    fail "$ref" "not enough free space in $VOLUME_BACKUP_DIR for $path (${need:-?} KiB; ${avail:-?} KiB free, keeping $VOLUME_BACKUP_MIN_FREE_PERCENT% free)"
    continue
  fi
  name=$(pvc_archive_name "$ref" "$stamp")
  out="$VOLUME_BACKUP_DIR/$name"
  # Numeric owners (the pods' uids mean nothing on the host), ACLs, extended attributes and
  # holes kept. tar exits 1 for files changed while read: the archive is whole, say so.
  # In the background, waited for: a signal runs the trap at once (bash defers it while a
  # foreground command runs), and the trap stops tar before it removes the partial file.
  rc=0 partial="$out.partial"
  tar --create --gzip --file "$partial" --directory "$path" --numeric-owner --acls --xattrs \
    --xattrs-include='*' --sparse . 2>"$work/tar.err" &
  tarpid=$!
  wait "$tarpid" || rc=$?
  tarpid=
  if [ "$rc" = 1 ]; then
    echo "volume-backup: $ref: files changed while read (a live volume): $(head -c 300 "$work/tar.err")" >&2
  elif [ "$rc" != 0 ]; then
    rm -f "$partial"
    partial=
    fail "$ref" "tar of $path failed: $(head -c 300 "$work/tar.err")"
    continue
  fi
  gzip -t "$partial" 2>/dev/null || { rm -f "$partial"; partial=; fail "$ref" "$name does not read back"; continue; }
  mv -f "$partial" "$out"
  partial=
  echo "volume-backup: $ref ($pv, $path) -> $out ($(wc -c <"$out") bytes)"
done <"$work/want"

# Local rotation: older than KEEP_DAYS, and off-site already when that is required.
find "$VOLUME_BACKUP_DIR" -maxdepth 1 -type f -name '*_*-*.tar.gz' ! -name "*-$stamp.tar.gz" \
  -mmin +$((VOLUME_BACKUP_KEEP_DAYS * 1440)) | sort | while read -r f; do
  if [ "${BACKUP_REQUIRE_OFFSITE:-0}" = 1 ] && [ ! -e "$f.offsite" ]; then
    echo "volume-backup: kept $f: not off-site yet" >&2
    continue
  fi
  rm -f "$f" "$f.offsite"
  echo "volume-backup: rotated out $f"
done

[ -z "$failed" ] || die "FAILED for:$failed (see the messages above)"
ok=1
echo "volume-backup: ok: $(wc -l <"$work/want") volumes"
