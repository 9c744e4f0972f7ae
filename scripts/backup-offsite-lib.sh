# backup-offsite-lib.sh: shared by backup-offsite.sh, volume-backup.sh and the restore scripts
# (sourced from the same folder). Not run on its own.
#
# Off-site layout, for S3-compatible storage through rclone (Debian: rclone):
#   BUCKET/PREFIX/KIND/daily/NAME.age     every archive, encrypted with age
#   BUCKET/PREFIX/KIND/weekly/NAME.age    the first archive of each ISO week, kept longer
# KIND is k3s-datastore, postgres or volumes; NAME is the local file name (it ends in a UTC stamp
# YYYYmmddTHHMMSSZ, so names sort by time).
#
#   BACKUP_RCLONE_CONFIG  rclone config holding the S3 remote and its keys, mode 0600
#                         (default /etc/labctl-backup/rclone.conf)
#   BACKUP_RCLONE_REMOTE  remote name in it (default offsite)
#   BACKUP_S3_BUCKET      bucket (required)
#   BACKUP_S3_PREFIX      folder inside the bucket (default: this host's name)

BACKUP_RCLONE_CONFIG=${BACKUP_RCLONE_CONFIG:-/etc/labctl-backup/rclone.conf}
BACKUP_RCLONE_REMOTE=${BACKUP_RCLONE_REMOTE:-offsite}
BACKUP_S3_PREFIX=${BACKUP_S3_PREFIX:-$(hostname)}

# The UTC stamp inside a name, and the name without it (the series it belongs to).
stamp_of() { printf '%s\n' "$1" | sed -n 's/.*-\([0-9]\{8\}T[0-9]\{6\}Z\)\..*/\1/p'; }
series_of() { printf '%s\n' "$1" | sed 's/-[0-9]\{8\}T[0-9]\{6\}Z\..*//'; }

# The HELP of labctl_backup_last_run_ok, the same in every .prom file that has it: node-exporter's
# textfile collector drops a metric whose help differs from another file's.
backup_ok_help() {
  echo "# HELP labctl_backup_last_run_ok 1 if the last run of this backup kind did all its work, else 0."
  echo "# TYPE labctl_backup_last_run_ok gauge"
}

# A PVC as NAMESPACE/NAME (DNS labels), and its archive's name: NAMESPACE_NAME-STAMP.tar.gz (`_`
# is in neither, so the series NAMESPACE_NAME names one PVC).
valid_pvc_ref() {
  case $1 in */*/* | /* | */ | *[!a-z0-9./-]*) return 1 ;; */*) return 0 ;; *) return 1 ;; esac
}
pvc_series() { printf '%s\n' "$1" | tr / _; }
pvc_archive_name() { printf '%s-%s.tar.gz\n' "$(pvc_series "$1")" "$2"; }

# kubectl jsonpath of a PV's local folder and node, tab-separated: the folder of a hostPath or
# local volume (what k3s's local-path provisioner makes), the node its affinity pins it to. One
# definition for the backup and the restore, so both agree on what a local volume is.
PV_PATH_NODE_JSONPATH='{.spec.hostPath.path}{.spec.local.path}{"\t"}{.spec.nodeAffinity.required.nodeSelectorTerms[*].matchExpressions[?(@.key=="kubernetes.io/hostname")].values[*]}'

offsite_check() {
  command -v rclone >/dev/null 2>&1 || die "rclone is not installed (apt-get install rclone)"
  command -v age >/dev/null 2>&1 || die "age is not installed (apt-get install age)"
  [ -n "${BACKUP_S3_BUCKET:-}" ] || die "BACKUP_S3_BUCKET is not set"
  [ -r "$BACKUP_RCLONE_CONFIG" ] || die "cannot read the rclone config $BACKUP_RCLONE_CONFIG"
  case $BACKUP_S3_PREFIX in *[!A-Za-z0-9_.-]*) die "BACKUP_S3_PREFIX must be a plain name, not '$BACKUP_S3_PREFIX'" ;; esac
}

# rclone with our config; keys stay in the 0600 file, never in argv or the environment.
rcl() { rclone --config "$BACKUP_RCLONE_CONFIG" --retries 3 --low-level-retries 3 -q "$@"; }

# remote path for KIND and SLOT (daily/weekly)
remote_dir() { printf '%s:%s/%s/%s/%s/' "$BACKUP_RCLONE_REMOTE" "$BACKUP_S3_BUCKET" "$BACKUP_S3_PREFIX" "$1" "$2"; }

# Object names in KIND/SLOT, oldest first. rclone exits 3 ("directory not found") for a prefix
# with no object yet: that is an empty list, not an error.
remote_list() {
  local out rc=0
  out=$(rcl lsf --files-only "$(remote_dir "$1" "$2")") || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 3 ] || return 1
  [ -z "$out" ] || printf '%s\n' "$out" | sort
}

# Decrypt FILE.age into OUT with the identity file IDENTITY. age authenticates every chunk, so a
# tampered or truncated archive fails here, before anything is restored.
decrypt_to() {
  [ -r "$3" ] || die "cannot read the age identity $3 (AGE_IDENTITY)"
  age -d -i "$3" -o "$2" "$1" 2>"$2.err" || {
    why=$(head -c 300 "$2.err")
    rm -f "$2" "$2.err"
    die "cannot decrypt $(basename "$1"): it is tampered, truncated, or not for this key ($why)"
  }
  rm -f "$2.err"
}

# Fetch the newest (or the named) object of KIND into DIR; prints the local path.
fetch_newest() {
  local kind=$1 dir=$2 want=${3:-} series=${4:-} all name
  if [ -n "$want" ]; then
    name=$want
  else
    all=$(remote_list "$kind" daily) || die "cannot list $(remote_dir "$kind" daily)"
    if [ -n "$series" ]; then all=$(printf '%s\n' "$all" | grep "^$series-[0-9]\{8\}T[0-9]\{6\}Z\." || true); fi
    name=$(printf '%s\n' "$all" | sed '/^$/d' | tail -n 1)
    [ -n "$name" ] || die "no off-site $kind archive${series:+ for $series} in $(remote_dir "$kind" daily)"
  fi
  rcl copyto "$(remote_dir "$kind" daily)$name" "$dir/$name" || die "cannot download $name"
  printf '%s\n' "$dir/$name"
}
