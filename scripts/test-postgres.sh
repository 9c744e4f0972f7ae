#!/bin/sh
# test-postgres.sh: from your laptop, over the VPN, prove PostgreSQL answers on its NodePort:
# write a row on one connection, read it back on another, delete it. Exit non-zero on failure.
#
#   PGHOST            the server's VPN address (required), e.g. 10.200.0.1
#   PGPORT            default 30432 (the postgres role's NodePort)
#   PGUSER            default postgres;  PGDATABASE default postgres
#   the password, never on the command line:
#     PGPASSWORD=…           in the environment, or
#     PG_PASSWORD_FILE=FILE  a file holding only the password, mode 0600, e.g.
#       (umask 077; labctl vault get inventories/lab/group_vars/all/vault.yml.age vault_postgres_password > ~/.pg-lab)
# Needs psql (Debian: postgresql-client).
set -eu

die() { echo "test-postgres: FAILED: $*" >&2; exit 1; }

command -v psql >/dev/null 2>&1 || die "psql is not installed (apt-get install postgresql-client)"
[ -n "${PGHOST:-}" ] || die "set PGHOST to the server's VPN address"
export PGPORT="${PGPORT:-30432}" PGUSER="${PGUSER:-postgres}" PGDATABASE="${PGDATABASE:-postgres}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "${PG_PASSWORD_FILE:-}" ]; then
  [ -r "$PG_PASSWORD_FILE" ] || die "cannot read $PG_PASSWORD_FILE"
  case $(stat -c %a "$PG_PASSWORD_FILE") in 600 | 400) ;; *) die "$PG_PASSWORD_FILE must be mode 0600 (it holds a password)" ;; esac
  # libpq reads passwords from a pgpass file, never from argv: build one (0600) for this run.
  umask 077
  pw=$(cat "$PG_PASSWORD_FILE")
  esc=$(printf '%s' "$pw" | sed 's/[\\:]/\\&/g')
  printf '*:*:*:*:%s\n' "$esc" >"$tmp/pgpass"
  export PGPASSFILE="$tmp/pgpass"
  unset PGPASSWORD
elif [ -z "${PGPASSWORD:-}" ]; then
  die "give the password in PGPASSWORD or PG_PASSWORD_FILE"
fi

sql() { psql -X --no-password -v ON_ERROR_STOP=1 -At -c "$1"; }
token="labctl-test-$(date +%s)-$$"

sql "select 1" >/dev/null || die "cannot connect to $PGUSER@$PGHOST:$PGPORT/$PGDATABASE"
sql "create table if not exists labctl_smoke (token text primary key, at timestamptz default now())" >/dev/null ||
  die "cannot create the test table"
sql "insert into labctl_smoke (token) values ('$token')" >/dev/null || die "insert failed"
got=$(sql "select token from labctl_smoke where token = '$token'") || die "select failed"
sql "delete from labctl_smoke where token = '$token'" >/dev/null || die "cleanup failed"
[ "$got" = "$token" ] || die "wrote '$token' but read back '$got'"
echo "test-postgres: ok ($PGUSER@$PGHOST:$PGPORT/$PGDATABASE: write/read round trip)"
