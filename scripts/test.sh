#!/usr/bin/env bash
# The one test command: installs and starts what the tests need, checks formatting and
# vet, runs every test against real services, then the dashboards' checks.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== golangci-lint"
"$(go env GOPATH)/bin/golangci-lint" run ./...

echo "== go test"
export TEST_OUTPUT_DIR=${TEST_OUTPUT_DIR:-$PWD/.test-output}
go test -race -count=1 -timeout 25m ./...

echo "== fuzz"
# Every native fuzz target for a few seconds (its seed corpus already ran with the
# tests above; this mutates it).
{ git ls-files '*_test.go' | xargs grep -lE '^func Fuzz' || true; } | while read -r f; do
  for name in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | cut -d' ' -f2); do
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-3s}" "./$(dirname "$f")"
  done
done

if [ -x scripts/check-dashboards.sh ]; then
  echo "== dashboards"
  scripts/check-dashboards.sh
fi
echo "== all checks passed"
