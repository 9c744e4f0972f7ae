#!/bin/sh
# test-redis.sh: from your laptop, over the VPN, prove Redis answers on its NodePort: SET a
# key, GET it back, DEL it. Exit non-zero on failure.
#
#   REDIS_HOST            the server's VPN address (required), e.g. 10.200.0.1
#   REDIS_PORT            default 30379 (the redis role's NodePort)
#   the password, never on the command line:
#     REDISCLI_AUTH=…         in the environment (redis-cli reads it itself), or
#     REDIS_PASSWORD_FILE=FILE  a file holding only the password, mode 0600
# Needs redis-cli (Debian: redis-tools).
set -eu

die() { echo "test-redis: FAILED: $*" >&2; exit 1; }

command -v redis-cli >/dev/null 2>&1 || die "redis-cli is not installed (apt-get install redis-tools)"
[ -n "${REDIS_HOST:-}" ] || die "set REDIS_HOST to the server's VPN address"
REDIS_PORT=${REDIS_PORT:-30379}
if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  [ -r "$REDIS_PASSWORD_FILE" ] || die "cannot read $REDIS_PASSWORD_FILE"
  case $(stat -c %a "$REDIS_PASSWORD_FILE") in 600 | 400) ;; *) die "$REDIS_PASSWORD_FILE must be mode 0600 (it holds a password)" ;; esac
  REDISCLI_AUTH=$(cat "$REDIS_PASSWORD_FILE")
  export REDISCLI_AUTH
elif [ -z "${REDISCLI_AUTH:-}" ]; then
  die "give the password in REDISCLI_AUTH or REDIS_PASSWORD_FILE"
fi

# redis-cli exits 0 on error replies: judge by the replies themselves.
r() { timeout 15 redis-cli --no-auth-warning -h "$REDIS_HOST" -p "$REDIS_PORT" "$@" 2>&1; }
key="labctl:test:$(date +%s):$$"
token="v-$(date +%s)-$$"

pong=$(r PING) || true
[ "$pong" = PONG ] || die "PING to $REDIS_HOST:$REDIS_PORT answered '$pong'"
set_reply=$(r SET "$key" "$token" EX 60) || true
[ "$set_reply" = OK ] || die "SET answered '$set_reply'"
got=$(r GET "$key") || true
r DEL "$key" >/dev/null || true
[ "$got" = "$token" ] || die "wrote '$token' but read back '$got'"
echo "test-redis: ok ($REDIS_HOST:$REDIS_PORT: write/read round trip)"
