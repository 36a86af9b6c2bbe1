#!/usr/bin/env bash
# scripts/run.sh - runs the whole system: brings up the local stack (unless a broker is
# configured through CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS), builds in release, creates the
# topics and tables, and starts `creditstream all` (ingest + processor + sink) in the
# foreground. Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(scripts/release-binary.sh)

"$bin" topics
"$bin" schema

listen=${CREDITSTREAM__INGEST__LISTEN:-127.0.0.1:5000}
cat <<EOT

creditstream is starting on http://$listen  (metrics: http://$listen/metrics, API: http://$listen/openapi.json)

Try, in another terminal:
  curl -s "http://$listen/user?type=C&name=Arpana&lname=Sharma&credit_limit=500&credit_balance=500"
  curl -s "http://$listen/order?uid=<uid from above>&amount=120"
  curl -s "http://$listen/user?type=R&uid=<uid>"
  curl -s -X POST http://$listen/v1/orders -H 'content-type: application/json' -d '{"uid": <uid>, "amount": 50}'
  curl -s "http://$listen/v1/orders/<order_id>?wait_ms=2000"

EOT
exec "$bin" all
