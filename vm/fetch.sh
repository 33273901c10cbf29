#!/usr/bin/env bash
# Downloads Debian kernels (vm/kernels.json) into a cache and builds, for each,
# a small busybox initramfs that boots it with the host root shared read-only
# and the project read-write (vm/run.sh). Idempotent: with everything cached it
# touches no network. Usage: vm/fetch.sh [ID...]   (default: every kernel)
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
apt_ready=0
scratch_apt() {
  [ $apt_ready -eq 1 ] && return
  mkdir -p "$apt_root/lists/partial" "$apt_root/cache/archives/partial"
  touch "$apt_root/status"
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  key=/usr/share/keyrings/debian-archive-keyring.gpg
  {
    for suite in bullseye bookworm trixie-backports; do echo "deb [signed-by=$key] $mirror $suite main"; done
    echo "deb [signed-by=$key] ${mirror%/debian}/debian-security bookworm-security main"
  } >"$apt_root/sources.list"
  apt-get "${apt_opts[@]}" -qq update
  apt_ready=1
}

for id in "${ids[@]}"; do
  dir="$cache/$id"
  if [ -f "$dir/ready" ]; then continue; fi
  mapfile -t pkgs < <(node -e 'const k=require(process.argv[1])[process.argv[2]]; if(!k){process.exit(2)} console.log(k.packages.join("\n"))' "$here/kernels.json" "$id") ||
    { say "no kernel \"$id\" in vm/kernels.json"; exit 2; }
  scratch_apt
  rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
  say "downloading ${pkgs[*]}"
  (cd "$dir/debs" && apt-get "${apt_opts[@]}" -qq download "${pkgs[@]}")
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  # Up to 6.x the image is /boot/vmlinuz-KVER; from 7.x /usr/lib/modules/KVER/vmlinuz.
  vmlinuz=$( (ls "$dir"/root/boot/vmlinuz-* "$dir"/root/usr/lib/modules/*/vmlinuz 2>/dev/null || true) | head -n 1)
  [ -n "$vmlinuz" ] || { say "no kernel image in ${pkgs[*]}"; exit 1; }
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

  rm -rf "$dir/debs" "$dir/root"
  touch "$dir/ready"
  say "kernel $id ready: $kver ($(wc -l <"$initdir/modules.order") modules in the initramfs)"
done
