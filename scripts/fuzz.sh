#!/usr/bin/env bash
# Runs every native Go fuzz target of the module briefly (FUZZTIME each, default 3s), so
# that the targets keep compiling and their seed corpora keep passing. A new Fuzz
# function is picked up without editing this file.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
count=0
while read -r pkg; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/fuzz-$$.log 2>&1 || {
      cat /tmp/fuzz-$$.log; rm -f /tmp/fuzz-$$.log; exit 1; }
    count=$((count + 1))
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u | sed "s|^\.|$(go list -m)|")
rm -f /tmp/fuzz-$$.log
echo "fuzz: $count targets ran"
