#!/usr/bin/env bash
# Refreshes the charting library vendored into the embedded dashboard (web/ui/vendor/uplot)
# from the version pinned in web/uivendor/package-lock.json: npm installs it into a
# temporary folder, the released dist files and the licence are copied, and VERSION
# records the version, the lock's integrity and each copied file's SHA-256, which
# web/vendor_test.go checks. Nothing is built; the binary serves the files as they are.
# To move to another version: change web/uivendor/package.json, run
# `npm install --package-lock-only --ignore-scripts` there, then this script.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp web/uivendor/package.json web/uivendor/package-lock.json "$tmp/"
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
src="$tmp/node_modules/uplot"
dst=web/ui/vendor/uplot
mkdir -p "$dst"
cp "$src/dist/uPlot.esm.js" "$src/dist/uPlot.min.css" "$src/LICENSE" "$dst/"
version=$(node -p 'require(process.argv[1]).packages["node_modules/uplot"].version' "$PWD/web/uivendor/package-lock.json")
integrity=$(node -p 'require(process.argv[1]).packages["node_modules/uplot"].integrity' "$PWD/web/uivendor/package-lock.json")
{
  echo "uplot $version"
  echo "integrity $integrity"
  echo "# The npm package's dist/uPlot.esm.js and dist/uPlot.min.css and its LICENSE, unchanged."
  (cd "$dst" && sha256sum uPlot.esm.js uPlot.min.css LICENSE | awk '{print "sha256 " $1 " " $2}')
} >"$dst/VERSION"
echo "vendored uplot $version into $dst"
