#!/bin/bash
# pg-restore-drill.sh: prove the newest dump restores. For each database, restore its newest
# BACKUP_DIR/DB-*.sql.gz into a scratch database, then compare the row count of every table with
# the source. Any corrupt dump, restore error, missing table or count mismatch fails loudly.
#
# Connection: libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD or PGPASSFILE); the user must
# be allowed to create databases.
#   BACKUP_DIR            where pg-backup.sh writes (default /backups)
#   BACKUP_DATABASES      names to drill; default: every database that has a dump
#   DRILL_MAX_AGE_HOURS   the newest dump must be younger than this (default 26): a silently
#                         failing backup job is caught by the drill
#   DRILL_KEEP_SCRATCH=1  keep the scratch database for inspection
# Counts are compared with the live source: run the drill soon after the dump, when the
# application is quiet, or expect a mismatch on busy tables.
set -euo pipefail

BACKUP_DIR=${BACKUP_DIR:-/backups}
DRILL_MAX_AGE_HOURS=${DRILL_MAX_AGE_HOURS:-26}

die() { echo "pg-restore-drill: FAILED: $*" >&2; exit 1; }

for tool in psql gzip find; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
[ -d "$BACKUP_DIR" ] || die "no backup directory $BACKUP_DIR"

sql() { psql -X --no-password -v ON_ERROR_STOP=1 -At "$@"; }

if [ -z "${BACKUP_DATABASES:-}" ]; then
  BACKUP_DATABASES=$(find "$BACKUP_DIR" -maxdepth 1 -type f -name '*-*.sql.gz' -printf '%f\n' |
    sed 's/-[0-9]\{8\}T[0-9]\{6\}Z\.sql\.gz$//' | sort -u)
fi
[ -n "$BACKUP_DATABASES" ] || die "no dump found in $BACKUP_DIR"

scratch=
cleanup() {
  if [ -n "$scratch" ] && [ "${DRILL_KEEP_SCRATCH:-0}" != 1 ]; then
    sql -d postgres -c "drop database if exists \"$scratch\"" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

tables() {
  sql -d "$1" -c "select format('%I.%I', schemaname, tablename) from pg_tables
                  where schemaname not in ('pg_catalog', 'information_schema') order by 1"
}

for db in $BACKUP_DATABASES; do
  case $db in *[!A-Za-z0-9_.-]*) die "database name '$db' is not a plain name" ;; esac
  # Names sort by their UTC timestamp: the last one is the newest.
  dump=$(find "$BACKUP_DIR" -maxdepth 1 -type f -name "$db-*.sql.gz" | sort | tail -n 1)
  [ -n "$dump" ] || die "$db: no dump in $BACKUP_DIR"
  if [ -n "$(find "$dump" -mmin +$((DRILL_MAX_AGE_HOURS * 60)))" ]; then
    die "$db: the newest dump $dump is older than $DRILL_MAX_AGE_HOURS hours (is the backup job running?)"
  fi
  gzip -t "$dump" 2>/dev/null || die "$db: $dump is corrupt (gzip test failed)"

  scratch="drill_${db}"
  sql -d postgres -c "drop database if exists \"$scratch\"" >/dev/null
  sql -d postgres -c "create database \"$scratch\"" >/dev/null
  if ! gzip -dc "$dump" | sql -q -d "$scratch" >/dev/null; then
    die "$db: restoring $dump failed"
  fi

  src_tables=$(tables "$db")
  dst_tables=$(tables "$scratch")
  [ "$src_tables" = "$dst_tables" ] || die "$db: the restored tables differ from the source:
$(diff <(echo "$src_tables") <(echo "$dst_tables") || true)"
  n=0
  for t in $src_tables; do
    a=$(sql -d "$db" -c "select count(*) from $t")
    b=$(sql -d "$scratch" -c "select count(*) from $t")
    [ "$a" = "$b" ] || die "$db: table $t has $a rows in the source but $b in the restored dump"
    n=$((n + 1))
  done
  echo "pg-restore-drill: $db ok: $(basename "$dump") restored, $n tables, row counts match"
  cleanup
  scratch=
done
echo "pg-restore-drill: ok"
