#!/bin/bash
# pg-backup.sh: dump PostgreSQL databases, gzip them into BACKUP_DIR, delete dumps older than
# BACKUP_KEEP_DAYS. The backups role's CronJob runs this very file (shipped in a ConfigMap).
#
# Connection: the usual libpq variables (PGHOST, PGPORT, PGUSER, and PGPASSWORD or PGPASSFILE);
# never pass a password as an argument, it would show in the process list.
#   BACKUP_DIR         where dumps go (default /backups)
#   BACKUP_DATABASES   space-separated names; default: every non-template database but `postgres`
#   BACKUP_KEEP_DAYS   dumps older than this many days are deleted (default 7)
#   BACKUP_REQUIRE_OFFSITE=1  ... unless backup-offsite.sh has not pushed them yet
# Output: BACKUP_DIR/DB-YYYYmmddTHHMMSSZ.sql.gz (plain SQL, gzip). Exit non-zero on any failure.
set -euo pipefail

BACKUP_DIR=${BACKUP_DIR:-/backups}
BACKUP_KEEP_DAYS=${BACKUP_KEEP_DAYS:-7}

die() { echo "pg-backup: $*" >&2; exit 1; }

for tool in pg_dump psql gzip find; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
case $BACKUP_KEEP_DAYS in '' | *[!0-9]*) die "BACKUP_KEEP_DAYS must be a whole number of days, not '$BACKUP_KEEP_DAYS'" ;; esac
[ "$BACKUP_KEEP_DAYS" -ge 1 ] || die "BACKUP_KEEP_DAYS must be at least 1"
mkdir -p "$BACKUP_DIR" || die "cannot create $BACKUP_DIR"
[ -w "$BACKUP_DIR" ] || die "$BACKUP_DIR is not writable"
# Dumps hold every row: readable by the backup owner only.
umask 077

if [ -z "${BACKUP_DATABASES:-}" ]; then
  BACKUP_DATABASES=$(psql -X -v ON_ERROR_STOP=1 -At -d "${PGDATABASE:-postgres}" \
    -c "select datname from pg_database where not datistemplate and datname <> 'postgres' and datallowconn order by 1") \
    || die "cannot list databases (is the server reachable and the password right?)"
fi
[ -n "$BACKUP_DATABASES" ] || die "no database to back up"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
for db in $BACKUP_DATABASES; do
  case $db in *[!A-Za-z0-9_.-]*) die "database name '$db' is not a plain name" ;; esac
  out="$BACKUP_DIR/$db-$stamp.sql.gz"
  part="$out.partial"
  # Written under a temporary name: a crash never leaves a truncated dump that looks complete.
  if ! pg_dump --no-password --format=plain --no-owner --dbname="$db" | gzip -6 >"$part"; then
    rm -f "$part"
    die "pg_dump of $db failed"
  fi
  gzip -t "$part" || { rm -f "$part"; die "the dump of $db does not read back"; }
  mv -f "$part" "$out"
  echo "pg-backup: $db -> $out ($(wc -c <"$out") bytes)"
done

# Rotation: by age, never the dumps just written, and (BACKUP_REQUIRE_OFFSITE=1) never a dump
# backup-offsite.sh has not pushed yet (no NAME.offsite marker beside it).
find "$BACKUP_DIR" -maxdepth 1 -type f -name '*.sql.gz' ! -name "*-$stamp.sql.gz" -mmin +$((BACKUP_KEEP_DAYS * 1440)) |
  sort | while read -r f; do
    if [ "${BACKUP_REQUIRE_OFFSITE:-0}" = 1 ] && [ ! -e "$f.offsite" ]; then
      echo "pg-backup: kept $f: not off-site yet" >&2
      continue
    fi
    rm -f "$f" "$f.offsite"
    echo "pg-backup: rotated out $f"
  done
find "$BACKUP_DIR" -maxdepth 1 -type f -name '*.sql.gz.partial' -mmin +1440 -delete
echo "pg-backup: ok"
