#!/bin/bash
# pg-restore-offsite.sh: restore the newest off-site dump of a database into a FRESH database and
# prove it: the row count of every table in the restored database must equal the number of rows
# the dump itself holds for that table. Nothing existing is touched or overwritten.
#
#   RESTORE_DATABASE   the database whose dump to restore (required), e.g. app
#   RESTORE_TARGET     the new database (default RESTORE_DATABASE_restored_YYYYmmddHHMMSS); it
#                      must not exist. Rename it into place yourself once you trust it.
#   RESTORE_OBJECT     a named off-site object (e.g. app-20260101T020000Z.sql.gz.age) instead
#                      of the newest; RESTORE_FILE a local .sql.gz.age file instead of S3
#   AGE_IDENTITY       your age identity file (required: only the recipients can decrypt)
#   RESTORE_COMPARE_SOURCE=1  also compare with the live RESTORE_DATABASE (a drill)
#   PostgreSQL: the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD or PGPASSFILE); the user
#   must be allowed to create databases.
#   S3: the settings of backup-offsite-lib.sh (on the server: . /etc/labctl-backup/offsite.env).
# A tampered, truncated or foreign archive fails before any database is created.
set -euo pipefail

die() { echo "pg-restore-offsite: FAILED: $*" >&2; exit 1; }
. "$(dirname "$0")/backup-offsite-lib.sh"

db=${RESTORE_DATABASE:-}
[ -n "$db" ] || die "set RESTORE_DATABASE to the database to restore"
case $db in *[!A-Za-z0-9_.-]*) die "RESTORE_DATABASE must be a plain name" ;; esac
target=${RESTORE_TARGET:-${db}_restored_$(date -u +%Y%m%d%H%M%S)}
case $target in *[!A-Za-z0-9_]*) die "RESTORE_TARGET must be letters, digits and _" ;; esac
[ -n "${AGE_IDENTITY:-}" ] || die "set AGE_IDENTITY to your age identity file"
for tool in psql gzip age awk; do command -v $tool >/dev/null 2>&1 || die "$tool is not installed"; done

umask 077
work=$(mktemp -d /tmp/pg-restore-offsite.XXXXXX)
created=
cleanup() {
  if [ -n "$created" ]; then
    psql -X --no-password -q -d postgres -c "drop database if exists \"$target\"" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${RESTORE_FILE:-}" ]; then
  enc=$RESTORE_FILE
else
  offsite_check
  enc=$(fetch_newest postgres "$work" "${RESTORE_OBJECT:-}" "$db") || exit 1
fi
echo "pg-restore-offsite: using $(basename "$enc")"
# The dump is decrypted on the fly each time it is read (check, count, restore): it is never on
# disk in clear, here or in /tmp. age authenticates every chunk, so the check reads it whole.
[ -r "$AGE_IDENTITY" ] || die "cannot read the age identity $AGE_IDENTITY (AGE_IDENTITY)"
plain() { age -d -i "$AGE_IDENTITY" "$enc" 2>"$work/age.err"; }
plain | gzip -t 2>/dev/null && st=(0 0) || st=("${PIPESTATUS[@]}")
# 141: age stopped by SIGPIPE because gzip gave up first, so the gzip stream is the fault.
if [ "${st[0]}" != 0 ] && [ "${st[0]}" != 141 ]; then
  die "cannot decrypt $(basename "$enc"): it is tampered, truncated, or not for this key ($(head -c 300 "$work/age.err"))"
fi
[ "${st[1]}" = 0 ] || die "$(basename "$enc") decrypts but is not a whole gzip stream"

# What the dump holds: rows per table, counted in its COPY blocks (one line per row).
plain | gzip -dc | awk '
  /^COPY / { t = $2; n[t] += 0; inblock = 1; next }
  inblock && /^\\\.$/ { inblock = 0; next }
  inblock { n[t]++ }
  END { for (t in n) print t, n[t] }' | sort >"$work/expected"
[ -s "$work/expected" ] || die "the dump holds no table data"

sql() { psql -X --no-password -v ON_ERROR_STOP=1 -At "$@"; }
[ -z "$(sql -d postgres -c "select 1 from pg_database where datname = '$target'")" ] ||
  die "database $target exists already: choose another RESTORE_TARGET"
sql -d postgres -c "create database \"$target\"" >/dev/null || die "cannot create database $target"
created=1
plain | gzip -dc | sql -q --single-transaction -d "$target" >/dev/null 2>"$work/restore.err" ||
  die "restoring into $target failed: $(head -c 500 "$work/restore.err")"

n=0
while read -r table want; do
  got=$(sql -d "$target" -c "select count(*) from $table") || die "table $table is missing after the restore"
  [ "$got" = "$want" ] || die "table $table: the dump holds $want rows, the restored database $got"
  if [ "${RESTORE_COMPARE_SOURCE:-0}" = 1 ]; then
    live=$(sql -d "$db" -c "select count(*) from $table") || die "cannot count $table in $db"
    [ "$live" = "$got" ] || die "table $table: $got rows restored, $live in the live $db"
  fi
  n=$((n + 1))
done <"$work/expected"
created=
also=
[ "${RESTORE_COMPARE_SOURCE:-0}" != 1 ] || also=" and the live $db"
echo "pg-restore-offsite: ok: $(basename "$enc") restored into database $target, $n tables, row counts match the dump$also"
