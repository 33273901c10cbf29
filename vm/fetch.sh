#!/usr/bin/env bash
# Fetches the newest Debian kernel of each series in vm/kernels.json into a
# cache and builds, for each, a small busybox initramfs that boots it with the
# host root shared read-only and the project read-write (vm/run.sh).
# Usage: vm/fetch.sh [SERIES...]   (default: every series)
#
# The exact packages are looked up in apt's index on every run (never pinned:
# the archive drops a version once a newer one supersedes it). Each version
# gets its own cache directory, $cache/SERIES/IMAGE_VERSION, and
# $cache/SERIES/current points at the one to boot. When the index or the
# download fails (no network), the series keeps its current kernel and says so.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${WSTRACE_VM_CACHE:-$here/../.cache/vm}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
say() { printf 'vm/fetch: %s\n' "$*" >&2; }

need=()
for p in qemu-system-x86 busybox-static cpio kmod xz-utils zstd; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

ids=("$@")
[ ${#ids[@]} -gt 0 ] || mapfile -t ids < <(node -e 'console.log(Object.keys(require(process.argv[1])).join("\n"))' "$here/kernels.json")

# A scratch apt: its own lists and caches, the host's keys and network settings, /etc/apt untouched.
apt_root="$cache/apt"
apt_opts=(-o "Dir::Etc::sourcelist=$apt_root/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$apt_root/lists" -o "Dir::State::status=$apt_root/status"
  -o "Dir::Cache=$apt_root/cache" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
mkdir -p "$apt_root/lists/partial" "$apt_root/cache/archives/partial"
touch "$apt_root/status"
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
key=/usr/share/keyrings/debian-archive-keyring.gpg
suites_of() { node -e 'const k = require(process.argv[1]); const ids = process.argv.slice(2);
  console.log([...new Set(Object.entries(k).filter(([id]) => !ids.length || ids.includes(id)).flatMap(([, s]) => s.suites ?? []))].join("\n"))' \
  "$here/kernels.json" "$@"; }
# One update per suite, so that a suite gone from the mirror (bullseye, one
# day) stops only the series that use it. A suite that fails counts as
# offline: its stale index may name versions the archive no longer has.
mkdir -p "$apt_root/suites"
failed=()
while read -r suite; do
  case "$suite" in
    *-security) uri=${mirror%/debian}/debian-security ;;
    *) uri=$mirror ;;
  esac
  echo "deb [signed-by=$key] $uri $suite main" >"$apt_root/suites/$suite.list"
  if ! apt-get "${apt_opts[@]}" -o "Dir::Etc::sourcelist=$apt_root/suites/$suite.list" -qq --error-on=any update \
    2>"$apt_root/suites/$suite.log"; then
    failed+=("$suite")
    say "cannot update the index of $suite: $(grep -m1 -E '^(E|W):' "$apt_root/suites/$suite.log" || echo 'no reason given')"
  fi
done < <(suites_of "${ids[@]}")
cat "$apt_root"/suites/*.list >"$apt_root/sources.list"
mapfile -t names < <(apt-cache "${apt_opts[@]}" pkgnames linux- 2>/dev/null || true)
# Every linux-* package, not only those a pattern would match: vm/resolve.mjs does the choosing.
: >"$apt_root/madison"
[ ${#names[@]} -eq 0 ] || apt-cache "${apt_opts[@]}" madison "${names[@]}" >"$apt_root/madison" 2>/dev/null || true

# Keeps the series on the kernel it already has, or stops when it has none.
keep_current() {
  local id=$1 why=$2
  if [ -f "$cache/$id/current/ready" ]; then
    say "$why; using the cached $(head -n 1 "$cache/$id/current/packages" | tr '=' ' '), which may not be the newest"
    return 0
  fi
  say "$why, and no kernel of series $id is cached"
  exit 1
}

# Unpacks the packages downloaded into $dir/debs and builds $dir/{vmlinuz,initrd.img,release}.
build() {
  local dir=$1
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  # Up to 6.x the image is /boot/vmlinuz-KVER; from 7.x /usr/lib/modules/KVER/vmlinuz.
  vmlinuz=$( (ls "$dir"/root/boot/vmlinuz-* "$dir"/root/usr/lib/modules/*/vmlinuz 2>/dev/null || true) | head -n 1)
  [ -n "$vmlinuz" ] || { say "no kernel image in $(tr '\n' ' ' <"$dir/packages")"; exit 1; }
  case "$vmlinuz" in
    */boot/vmlinuz-*) kver=${vmlinuz##*/vmlinuz-} ;;
    *) kver=$(basename "$(dirname "$vmlinuz")") ;;
  esac
  moddir="$dir/root/lib/modules"
  [ -d "$moddir/$kver" ] || moddir="$dir/root/usr/lib/modules"
  cp "$vmlinuz" "$dir/vmlinuz"
  echo "$kver" >"$dir/release"
  depmod -b "$(dirname "$(dirname "$moddir")")" "$kver" 2>/dev/null || depmod -b "$dir/root" "$kver"

  # The modules 9p over virtio needs, in load order ("builtin" ones are skipped).
  initdir="$dir/initramfs"
  rm -rf "$initdir" && mkdir -p "$initdir"/{bin,proc,sys,dev,host,lib/mod}
  modroot="$(dirname "$(dirname "$moddir")")"
  : >"$initdir/modules.order"
  { modprobe -d "$modroot" -S "$kver" -a --show-depends virtio_pci 9pnet_virtio 9p 2>/dev/null || true; } |
    awk '$1 == "insmod" {print $2}' | while read -r ko; do
      name=$(basename "$ko")
      case "$name" in
        *.ko.xz) xz -dc "$ko" >"$initdir/lib/mod/${name%.xz}"; name=${name%.xz} ;;
        *.ko.zst) zstd -qdc "$ko" >"$initdir/lib/mod/${name%.zst}"; name=${name%.zst} ;;
        *) cp "$ko" "$initdir/lib/mod/$name" ;;
      esac
      grep -qx "$name" "$initdir/modules.order" || echo "$name" >>"$initdir/modules.order"
    done
  cp /bin/busybox "$initdir/bin/busybox"
  cp "$here/init.sh" "$initdir/init"
  chmod +x "$initdir/init"
  (cd "$initdir" && find . | cpio -o -H newc --quiet | gzip -1) >"$dir/initrd.img"
}

for id in "${ids[@]}"; do
  rc=0
  resolved=$(node "$here/resolve.mjs" "$here/kernels.json" "$id" <"$apt_root/madison" 2>"$apt_root/resolve.err") || rc=$?
  [ $rc -ne 2 ] || { say "$(cat "$apt_root/resolve.err")"; exit 2; }
  down=()
  while read -r suite; do
    [[ " ${failed[*]} " == *" $suite "* ]] && down+=("$suite")
  done < <(suites_of "$id")
  if [ ${#down[@]} -gt 0 ]; then
    keep_current "$id" "kernel $id: no fresh index of ${down[*]}"
    continue
  fi
  if [ $rc -ne 0 ]; then
    keep_current "$id" "$(tail -n 1 "$apt_root/resolve.err")"
    continue
  fi
  while read -r line; do say "$line"; done <"$apt_root/resolve.err"
  mapfile -t pkgs < <(cut -d' ' -f1 <<<"$resolved")
  suite=$(head -n 1 <<<"$resolved" | cut -d' ' -f2)
  # The directory is named like the .deb; dpkg writes an epoch's ':' as %3a.
  name=${pkgs[0]/=/_}
  name=${name//:/%3a}
  dir="$cache/$id/$name"
  if [ -f "$dir/ready" ]; then
    say "kernel $id: newest is ${pkgs[0]/=/ } ($suite), already cached"
  else
    say "kernel $id: newest is ${pkgs[0]/=/ } ($suite); downloading ${pkgs[*]}"
    rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
    printf '%s\n' "${pkgs[@]}" >"$dir/packages"
    if ! (cd "$dir/debs" && apt-get "${apt_opts[@]}" -qq download "${pkgs[@]}"); then
      rm -rf "$dir"
      keep_current "$id" "kernel $id: could not download ${pkgs[*]}"
      continue
    fi
    build "$dir"
    rm -rf "$dir/debs" "$dir/root"
    node -e 'const [series, release, ...p] = process.argv.slice(1);
      console.log(JSON.stringify({ series, release, packages: p.map((x) => ({ name: x.split("=")[0], version: x.split("=")[1] })) }))' \
      "$id" "$(cat "$dir/release")" "${pkgs[@]}" >"$dir/kernel.json"
    touch "$dir/ready"
    say "kernel $id ready: $(cat "$dir/release") ($(wc -l <"$dir/initramfs/modules.order") modules in the initramfs)"
  fi
  # Swapped in with a rename so a vm/run.sh starting meanwhile sees one kernel or the other.
  ln -sfn "$name" "$cache/$id/current.new" && mv -T "$cache/$id/current.new" "$cache/$id/current"
  # Older versions (and the flat layout of before) are of no use once the newest is ready.
  find "$cache/$id" -mindepth 1 -maxdepth 1 ! -name current ! -name "$name" -exec rm -rf {} +
done
