#!/usr/bin/env bash
# Builds wstrace_<version>_amd64.deb from the npm package tarball, offline:
#   scripts/build-deb.sh wstrace-<version>.tgz [OUTDIR]
# It lays out the same files `npm install -g` would, under /usr/lib/wstrace
# (the tarball's contents, with the prebuilt addon, plus its production
# dependencies installed from npm's cache by the lock file), the command as
# /usr/bin/wstrace, the systemd unit and /etc/default/wstrace (a conffile),
# then packs them with dpkg-deb. Nothing is compiled and nothing downloaded:
# npm's cache holds the dependencies since `npm ci` (setup.sh) ran.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }

tarball=${1:-}
outdir=${2:-.}
[ -f "$tarball" ] || die "no package tarball given: run \`npm pack\` first, then scripts/build-deb.sh wstrace-<version>.tgz."
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing: apt-get install dpkg."
tarball=$(readlink -f "$tarball")
mkdir -p "$outdir"
outdir=$(readlink -f "$outdir")

stage=$(mktemp -d /tmp/wstrace-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
tree="$stage/root"
lib="$tree/usr/lib/wstrace"
mkdir -p "$lib" "$tree/usr/bin" "$tree/lib/systemd/system" "$tree/etc/default" "$tree/DEBIAN"

tar -xzf "$tarball" -C "$lib" --strip-components=1 --no-same-owner
[ -n "$(ls "$lib"/prebuilds/linux-x64/*.node 2>/dev/null)" ] ||
  die "the tarball carries no prebuilt addon for linux-x64: pack it with \`npm pack\` (its prepack step builds one)."
version=$(node -p "require('$lib/package.json').version")

# Production dependencies exactly as the lock file pins them, from npm's cache.
# No install scripts: the package's own would look for a compiler it must not need.
cp package-lock.json "$lib/"
(cd "$lib" && npm ci --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) ||
  die "cannot install the dependencies offline: run \`npm ci\` (or ./setup.sh) once so npm's cache holds them."
rm -f "$lib/package-lock.json"

ln -s ../lib/wstrace/bin/wstrace.js "$tree/usr/bin/wstrace"
install -m 0644 contrib/wstrace-agent.service "$tree/lib/systemd/system/wstrace-agent.service"
install -m 0644 contrib/wstrace.default "$tree/etc/default/wstrace"
echo /etc/default/wstrace >"$tree/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$tree/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" packaging/deb/control.in >"$tree/DEBIAN/control"

# Files owned by root, readable by all, writable by root only, whatever the umask was.
chmod -R u=rwX,go=rX "$tree/usr" "$tree/lib" "$tree/etc"
deb="$outdir/wstrace_${version}_amd64.deb"
# gzip: every dpkg reads it, and it packs this tree in a fifth of the time xz takes.
dpkg-deb --root-owner-group -Zgzip --build "$tree" "$deb" >/dev/null
printf 'build-deb: %s\n' "${deb#"$root"/}" >&2
echo "$deb"
