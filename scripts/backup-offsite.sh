#!/bin/bash
# backup-offsite.sh: encrypt every local backup archive that is not off-site yet with age (to the
# repo's recipients) and push it to S3-compatible storage; keep BACKUP_KEEP_DAILY daily and
# BACKUP_KEEP_WEEKLY weekly copies per series there. Run on the k3s server by the backups role's
# labctl-backup-offsite.timer, after the PostgreSQL dumps and the k3s datastore backup.
#
# Loud on failure: exit 1, the metric labctl_backup_last_run_ok{kind} = 0 for node-exporter's
# textfile collector (alert BackupFailed), and the local archive is kept: the producers'
# rotation never deletes an archive without its NAME.offsite marker.
#
#   BACKUP_K3S_DIR        k3s datastore archives (default /var/backups/k3s)
#   BACKUP_PG_DIR         PostgreSQL dumps (default /var/backups/postgres)
#   BACKUP_VOLUMES_DIR    volume archives of volume-backup.sh (default /var/backups/volumes)
#   BACKUP_KINDS          default "k3s-datastore postgres"; the role adds volumes
#   BACKUP_AGE_RECIPIENTS age recipients file (default /etc/labctl-backup/recipients.txt)
#   BACKUP_KEEP_DAILY     default 30;  BACKUP_KEEP_WEEKLY  default 8
#   BACKUP_METRICS_DIR    default /var/lib/prometheus/node-exporter ("" = no metrics)
#   and the S3 settings of backup-offsite-lib.sh (bucket, prefix, rclone config)
set -euo pipefail

die() { echo "backup-offsite: $*" >&2; exit 1; }
. "$(dirname "$0")/backup-offsite-lib.sh"

BACKUP_K3S_DIR=${BACKUP_K3S_DIR:-/var/backups/k3s}
BACKUP_PG_DIR=${BACKUP_PG_DIR:-/var/backups/postgres}
BACKUP_VOLUMES_DIR=${BACKUP_VOLUMES_DIR:-/var/backups/volumes}
BACKUP_KINDS=${BACKUP_KINDS:-k3s-datastore postgres}
BACKUP_AGE_RECIPIENTS=${BACKUP_AGE_RECIPIENTS:-/etc/labctl-backup/recipients.txt}
BACKUP_KEEP_DAILY=${BACKUP_KEEP_DAILY:-30}
BACKUP_KEEP_WEEKLY=${BACKUP_KEEP_WEEKLY:-8}
BACKUP_METRICS_DIR=${BACKUP_METRICS_DIR-/var/lib/prometheus/node-exporter}

offsite_check
for n in "$BACKUP_KEEP_DAILY" "$BACKUP_KEEP_WEEKLY"; do
  case $n in '' | *[!0-9]*) die "BACKUP_KEEP_DAILY and BACKUP_KEEP_WEEKLY must be whole numbers" ;; esac
done
[ "$BACKUP_KEEP_DAILY" -ge 1 ] || die "BACKUP_KEEP_DAILY must be at least 1"
grep -q '^age1' "$BACKUP_AGE_RECIPIENTS" 2>/dev/null ||
  die "no age recipient in $BACKUP_AGE_RECIPIENTS: nothing leaves this host unencrypted"

umask 077
work=$(mktemp -d /tmp/backup-offsite.XXXXXX)
trap 'rm -rf "$work"' EXIT
: >"$work/metrics"

dir_of() {
  case $1 in
    k3s-datastore) echo "$BACKUP_K3S_DIR" ;; postgres) echo "$BACKUP_PG_DIR" ;; volumes) echo "$BACKUP_VOLUMES_DIR" ;;
    *) die "unknown kind $1" ;;
  esac
}
glob_of() { case $1 in k3s-datastore) echo 'k3s-datastore-*.tar.gz' ;; postgres) echo '*-*.sql.gz' ;; volumes) echo '*_*-*.tar.gz' ;; esac; }
for kind in $BACKUP_KINDS; do dir_of "$kind" >/dev/null; done

# Keep the newest KEEP names of each series from a sorted list on stdin; print the rest. The
# series is split off by sed: Debian's awk (mawk) has no regex intervals.
surplus() {
  sed -n 's/^\(.*\)-[0-9]\{8\}T[0-9]\{6\}Z\..*$/\1 &/p' | awk -v keep="$1" '
    { n[$1]++; name[$1, n[$1]] = $2 }
    END { for (s in n) for (i = 1; i <= n[s] - keep; i++) print name[s, i] }'
}

# One kind: upload what is pending, then apply retention. Fails (returns 1) on the first error.
push_kind() {
  kind=$1 dir=$(dir_of "$1") glob=$(glob_of "$1")
  [ -d "$dir" ] || { echo "backup-offsite: $kind: no folder $dir" >&2; return 1; }
  files=$(find "$dir" -maxdepth 1 -type f -name "$glob" ! -name '*.partial' -printf '%f\n' | sort)
  [ -n "$files" ] || { echo "backup-offsite: $kind: no archive in $dir (is the backup job running?)" >&2; return 1; }
  weekly=$(remote_list "$kind" weekly) || { echo "backup-offsite: $kind: cannot list $(remote_dir "$kind" weekly)" >&2; return 1; }
  for f in $files; do
    [ -e "$dir/$f.offsite" ] && continue
    enc="$work/$f.age"
    age -R "$BACKUP_AGE_RECIPIENTS" -o "$enc" "$dir/$f" || { echo "backup-offsite: $kind: cannot encrypt $f" >&2; return 1; }
    if ! rcl copyto "$enc" "$(remote_dir "$kind" daily)$f.age"; then
      echo "backup-offsite: $kind: upload of $f failed; the local copy is kept" >&2
      return 1
    fi
    # The first archive of its ISO week is also the week's copy.
    day=$(stamp_of "$f" | cut -c1-8)
    week=$(date -u -d "$day" +%G-W%V)
    series=$(series_of "$f")
    have_week=
    for w in $weekly; do
      [ "$(series_of "$w")" = "$series" ] || continue
      wd=$(stamp_of "$w" | cut -c1-8)
      [ "$(date -u -d "$wd" +%G-W%V)" = "$week" ] && have_week=1
    done
    if [ -z "$have_week" ]; then
      rcl copyto "$enc" "$(remote_dir "$kind" weekly)$f.age" || { echo "backup-offsite: $kind: weekly copy of $f failed" >&2; return 1; }
      weekly="$weekly $f.age"
    fi
    rm -f "$enc"
    : >"$dir/$f.offsite"
    echo "backup-offsite: $kind: $f -> $(remote_dir "$kind" daily)$f.age"
  done
  # Markers of archives the producer rotated out.
  for m in $(find "$dir" -maxdepth 1 -type f -name '*.offsite' -printf '%f\n'); do
    [ -e "$dir/${m%.offsite}" ] || rm -f "$dir/$m"
  done
  for slot in daily weekly; do
    keep=$BACKUP_KEEP_DAILY
    [ $slot = weekly ] && keep=$BACKUP_KEEP_WEEKLY
    all=$(remote_list "$kind" $slot) || { echo "backup-offsite: $kind: cannot list $slot" >&2; return 1; }
    old=$(printf '%s\n' "$all" | sed '/^$/d' | surplus "$keep")
    for o in $old; do
      rcl deletefile "$(remote_dir "$kind" $slot)$o" || { echo "backup-offsite: $kind: cannot delete $slot/$o" >&2; return 1; }
      echo "backup-offsite: $kind: rotated out $slot/$o"
    done
  done
}

# Newest archive that is off-site: its time is what "last success" means to the alert.
newest_offsite() {
  dir=$(dir_of "$1") glob=$(glob_of "$1")
  for f in $(find "$dir" -maxdepth 1 -type f -name "$glob" -printf '%f\n' 2>/dev/null | sort -r); do
    if [ -e "$dir/$f.offsite" ]; then stat -c %Y "$dir/$f"; return 0; fi
  done
  return 0
}

failed=
for kind in $BACKUP_KINDS; do
  if push_kind "$kind"; then ok=1; else ok=0; failed="$failed $kind"; fi
  pending=$(find "$(dir_of "$kind")" -maxdepth 1 -type f -name "$(glob_of "$kind")" ! -name '*.partial' 2>/dev/null |
    while read -r f; do [ -e "$f.offsite" ] || echo "$f"; done | wc -l)
  {
    echo "labctl_backup_last_run_ok{kind=\"$kind\"} $ok"
    echo "labctl_backup_offsite_pending{kind=\"$kind\"} $pending"
    t=$(newest_offsite "$kind")
    [ -z "$t" ] || echo "labctl_backup_last_success_timestamp_seconds{kind=\"$kind\"} $t"
  } >>"$work/metrics"
done

if [ -n "$BACKUP_METRICS_DIR" ]; then
  mkdir -p "$BACKUP_METRICS_DIR"
  {
    backup_ok_help
    echo "# HELP labctl_backup_offsite_pending Local archives not yet off-site."
    echo "# TYPE labctl_backup_offsite_pending gauge"
    echo "# HELP labctl_backup_last_success_timestamp_seconds Time of the newest archive that is off-site."
    echo "# TYPE labctl_backup_last_success_timestamp_seconds gauge"
    sort "$work/metrics"
  } >"$BACKUP_METRICS_DIR/.labctl_backup.prom.tmp"
  chmod 0644 "$BACKUP_METRICS_DIR/.labctl_backup.prom.tmp"
  # Renamed into place: the collector never reads half a file.
  mv -f "$BACKUP_METRICS_DIR/.labctl_backup.prom.tmp" "$BACKUP_METRICS_DIR/labctl_backup.prom"
fi

[ -z "$failed" ] || die "FAILED for:$failed (local copies kept; see the messages above)"
echo "backup-offsite: ok"
