#!/usr/bin/env bash
# Checks the Prometheus rules shipped in dashboards/: they load (with the duplicate-rule
# lint fatal) and their unit tests pass. The dashboard's panels are checked against a
# real Prometheus by `go test ./dashboards/`, which scripts/test.sh runs with the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found: install the Debian package 'prometheus' (scripts/install-deps.sh does)" >&2
  exit 1
fi

echo "-- promtool check rules"
promtool check rules --lint=all --lint-fatal dashboards/prometheus/rules.yml
echo "-- promtool test rules"
promtool test rules dashboards/prometheus/rules_test.yml
