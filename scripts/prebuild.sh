#!/usr/bin/env bash
# Builds the prebuilt addon the npm package and the .deb carry:
# prebuilds/<platform>-<arch>/wstrace.napi.glibc.node (node-gyp-build's naming:
# any Node with N-API 8, glibc), with libbpf and libstdc++ linked into it
# (scripts/link-flags.sh says why and how) and the BPF objects compiled into
# it, so a host installs it with no compiler. Beside it, bpf-objects.sha256:
# the objects' hashes, as `wstrace --version` prints them.
#
# It builds in a scratch copy of the sources, so the clone's own build/ and
# bpf/.output/ (setup.sh's source build, which other commands use meanwhile)
# are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { printf 'prebuild: %s\n' "$*" >&2; exit 1; }

[ -d node_modules/node-addon-api ] || die "node_modules is missing: run ./setup.sh first."
libbpf=$(scripts/libbpf-static.sh)
tuple=$(node -p 'process.platform + "-" + process.arch')

scratch=$(mktemp -d /tmp/wstrace-prebuild.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/scripts"
cp -r addon binding.gyp Makefile "$scratch/"
cp -r bpf "$scratch/bpf"
rm -rf "$scratch/bpf/.output"
cp scripts/link-flags.sh "$scratch/scripts/"
ln -s "$root/node_modules" "$scratch/node_modules"
# Run through npm, which hands node-gyp its settings (Node's own headers, no download).
cat >"$scratch/package.json" <<'JSON'
{"name": "wstrace-prebuild", "private": true, "scripts": {"addon": "make -s -j2 bpf && node-gyp rebuild --jobs=max --loglevel=error"}}
JSON
(cd "$scratch" && WSTRACE_LIBBPF_A="$libbpf" npm run --silent addon >"$scratch/build.log" 2>&1) ||
  { tail -20 "$scratch/build.log" >&2; die "the addon did not build."; }
addon="$scratch/build/Release/wstrace.node"

# What the addon needs at run time: glibc (libc, libm, the loader), libelf and zlib, nothing else.
extra=$(ldd "$addon" | awk '{print $1}' | grep -Ev '^(linux-vdso\.so|libc\.so|libm\.so|ld-linux-x86-64\.so|/lib64/ld-linux|libelf\.so|libz\.so)' || true)
[ -z "$extra" ] || die "the prebuilt addon links more than glibc, libelf and zlib: $extra"

out="prebuilds/$tuple"
rm -rf "$out"
mkdir -p "$out"
# Debug info out, symbols kept (a crash still names the function); the BPF objects are data and stay.
strip --strip-debug -o "$out/wstrace.napi.glibc.node" "$addon"
(cd "$scratch/bpf/.output" && sha256sum wstrace.bpf.o wstrace_ext.bpf.o) >"$out/bpf-objects.sha256"
# libbpf itself knows only its major.minor (v1.1); the Debian source version names the exact code linked in.
dpkg-query -W -f='${source:Version}\n' libbpf-dev >"$out/libbpf.version"
printf 'prebuild: %s (libbpf %s linked in)\n' "$out/wstrace.napi.glibc.node" "$(cat "$out/libbpf.version")" >&2
