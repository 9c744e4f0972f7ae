#!/bin/sh
# test-alert.sh: send one test alert into Alertmanager and see the mail arrive at alert_email_to.
# Over the VPN:          ALERTMANAGER_URL=https://alertmanager.lab.example.org scripts/test-alert.sh
# Or on the k3s server:  kubectl -n monitoring port-forward svc/monitoring-kube-prometheus-alertmanager 9093 &
#                        scripts/test-alert.sh
#   ALERTMANAGER_URL     default http://127.0.0.1:9093
#   TEST_ALERT_SEVERITY  default critical (routed like a real outage; `warning` and `info` work too)
#   TEST_ALERT_MINUTES   the alert resolves itself after this long (default 5); a "resolved" mail follows
#   CURL_CA_BUNDLE       a CA file, if your Alertmanager certificate is not publicly trusted (staging)
# The mail leaves after the route's group_wait (30s by default). Needs curl.
set -eu

url=${ALERTMANAGER_URL:-http://127.0.0.1:9093}
severity=${TEST_ALERT_SEVERITY:-critical}
minutes=${TEST_ALERT_MINUTES:-5}
die() { echo "test-alert: FAILED: $*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || die "curl is not installed"
case $severity in critical | warning | info) ;; *) die "TEST_ALERT_SEVERITY must be critical, warning or info" ;; esac
case $minutes in '' | *[!0-9]*) die "TEST_ALERT_MINUTES must be a whole number" ;; esac

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ends=$(date -u -d "+$minutes minutes" +%Y-%m-%dT%H:%M:%SZ)
id="$(hostname)-$(date -u +%s)"
body=$(printf '[{"labels":{"alertname":"LabTestAlert","severity":"%s","namespace":"monitoring","test_id":"%s"},"annotations":{"summary":"Test alert from scripts/test-alert.sh on %s: if you read this, alert mail works"},"startsAt":"%s","endsAt":"%s"}]' \
  "$severity" "$id" "$(hostname)" "$now" "$ends")

curl -fsS --max-time 20 -H 'Content-Type: application/json' -d "$body" "${url%/}/api/v2/alerts" >/dev/null ||
  die "Alertmanager at $url refused the alert (is the URL right, are you on the VPN?)"
echo "test-alert: sent LabTestAlert (severity=$severity, test_id=$id) to $url; expect mail within the route's group_wait"
