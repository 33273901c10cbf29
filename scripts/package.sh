#!/usr/bin/env bash
# `npm run package`: the two things an operator installs, in build/packages/:
# the npm tarball (npm pack; its prepack step builds the prebuilt addon and
# dist/) and the .deb made from it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/packages
mkdir -p "$out"
rm -f "$out"/wstrace-*.tgz "$out"/wstrace_*.deb
tgz=$(npm pack --silent --pack-destination "$out" | tail -1)
scripts/build-deb.sh "$out/$tgz" "$out" >/dev/null
ls -1 "$out"/wstrace-*.tgz "$out"/wstrace_*.deb
