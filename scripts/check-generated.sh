#!/usr/bin/env bash
# Fails when a generated file is not what `npm run gen` makes now: the signal
# table's copies (C enums, addon hook list, proto EventKind values, README hook
# table), then src/generated/ from proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/tsx scripts/gen-signals.ts --check
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx buf generate -o "$tmp"
if ! diff -r src/generated "$tmp/src/generated" >/dev/null; then
  echo "src/generated is stale: run \`npm run gen\` and commit the result." >&2
  diff -r src/generated "$tmp/src/generated" | head -20 >&2
  exit 1
fi
