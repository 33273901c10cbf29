#!/usr/bin/env bash
# Fails when src/generated/ is not what `npm run gen` makes from proto/ now.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx buf generate -o "$tmp"
if ! diff -r src/generated "$tmp/src/generated" >/dev/null; then
  echo "src/generated is stale: run \`npm run gen\` and commit the result." >&2
  diff -r src/generated "$tmp/src/generated" | head -20 >&2
  exit 1
fi
