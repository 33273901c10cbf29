#!/usr/bin/env bash
# Prints the path of a position-independent libbpf.a for the prebuilt addon,
# building it first when it is not in .cache/ yet.
#
# Why: the libbpf.a that libbpf-dev ships is compiled without -fPIC, and a
# shared object (wstrace.node) cannot hold it. So this compiles the very
# source Debian built the installed libbpf-dev from (same version, same
# patches), fetched with apt from the host's own Debian mirror; apt checks it
# against the mirror's signed source index. Nothing of the host's apt set-up
# is changed: the deb-src list and its index live under .cache/ too. The
# network is needed once; after that the archive comes from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'libbpf-static: %s\n' "$*" >&2; exit 1; }

version=$(dpkg-query -W -f='${source:Version}' libbpf-dev 2>/dev/null) ||
  die "libbpf-dev is not installed: run ./setup.sh first."
cache=".cache/libbpf/${version//[^A-Za-z0-9.+-]/_}"
archive="$PWD/$cache/obj/libbpf.a"
if [ -f "$archive" ]; then
  echo "$archive"
  exit 0
fi
mkdir -p "$cache/apt/lists/partial" "$cache/apt/sources" "$cache/src"

# The host's own Debian mirrors, as source (deb-src) entries.
shopt -s nullglob
for f in /etc/apt/sources.list.d/*.sources; do
  sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$cache/apt/sources/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] && { grep -E '^deb ' "$f" | sed 's/^deb /deb-src /' >"$cache/apt/sources/$(basename "$f")" || true; }
done
apt=(apt-get -qq -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$PWD/$cache/apt/sources"
  -o "Dir::State::Lists=$PWD/$cache/apt/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
"${apt[@]}" update >/dev/null || die "cannot read the source index of the host's Debian mirror."
(cd "$cache/src" && "${apt[@]}" --download-only source "libbpf=$version" >/dev/null) ||
  die "cannot download Debian's libbpf $version source package."

# The upstream tarball plus Debian's patches, if this version has any.
rm -rf "$cache/src/tree"
mkdir -p "$cache/src/tree"
tar -xf "$cache"/src/libbpf_*.orig.tar.* -C "$cache/src/tree" --strip-components=1
tar -xf "$cache"/src/libbpf_*.debian.tar.* -C "$cache/src/tree"
if [ -s "$cache/src/tree/debian/patches/series" ]; then
  while read -r p; do
    case "$p" in '' | '#'*) continue ;; esac
    patch -s -d "$cache/src/tree" -p1 <"$cache/src/tree/debian/patches/$p" || die "cannot apply Debian's patch $p."
  done <"$cache/src/tree/debian/patches/series"
fi

# libbpf's own Makefile, static library only, position-independent.
mkdir -p "$cache/obj"
make -s -C "$cache/src/tree/src" BUILD_STATIC_ONLY=y OBJDIR="$PWD/$cache/obj" \
  EXTRA_CFLAGS="-fPIC" -j"$(nproc)" >/dev/null || die "cannot build libbpf $version from source."
[ -f "$archive" ] || die "libbpf's build made no libbpf.a."
echo "$archive"
