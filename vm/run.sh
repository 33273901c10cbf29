#!/usr/bin/env bash
# Boots the cached Debian kernel of one series (vm/fetch.sh) under qemu with
# the host root shared read-only and the project read-write, runs COMMAND
# there, streams its output, and exits with its exit code (125 when the guest
# died or timed out). A guest that dies while it boots, before the command
# starts, is booted again (three boots in all). First prints, on stderr, a
# WSTRACE_VM_KERNEL line naming the exact packages and release booted.
# Usage: vm/run.sh [--timeout SECONDS] SERIES -- COMMAND...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
project="$(cd "$here/.." && pwd)"
cache="${WSTRACE_VM_CACHE:-$project/.cache/vm}"
timeout=300
if [ "${1:-}" = "--timeout" ]; then timeout=$2; shift 2; fi
id=${1:?usage: vm/run.sh [--timeout SECONDS] SERIES -- COMMAND...}
shift
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "vm/run: no command given" >&2; exit 2; }
# Only a series never fetched is fetched here: checking for a newer kernel is
# vm/fetch.sh's job, so that a run works offline with what is cached.
[ -f "$cache/$id/current/ready" ] || "$here/fetch.sh" "$id"
# Resolved once: a vm/fetch.sh moving "current" meanwhile cannot mix two kernels.
dir="$cache/$id/$(readlink "$cache/$id/current")"
printf 'WSTRACE_VM_KERNEL %s\n' "$(cat "$dir/kernel.json")" >&2

# Software emulation unless KVM is really usable (CPU flags and /dev/kvm).
accel=(-accel tcg,thread=multi -cpu max)
if [ "${WSTRACE_VM_KVM:-0}" = 1 ] && [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then
  accel=(-accel kvm -cpu host)
fi

# An initramfs cached before vm/init.sh last changed is packed again from it
# (into a new file, renamed over the old, so a run booting meanwhile reads one or the other).
if ! cmp -s "$here/init.sh" "$dir/initramfs/init"; then
  packed=$(mktemp "$dir/initrd.XXXXXX")
  cp "$here/init.sh" "$dir/initramfs/init.new" && chmod +x "$dir/initramfs/init.new" && mv -f "$dir/initramfs/init.new" "$dir/initramfs/init"
  (cd "$dir/initramfs" && find . | cpio -o -H newc --quiet | gzip -1) >"$packed"
  mv -f "$packed" "$dir/initrd.img"
fi

cmd=$(printf '%q ' "$@" | base64 -w0)
log=$(mktemp)
# A token of this run only: cleanup stops this guest, never another run's from the same checkout.
run_token="wstrace.run=$$.$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
cleanup() { pkill -P $$ qemu-system-x86 2>/dev/null || true; pkill -f "$run_token" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Boots the guest once, streaming its console into $log; returns when it stops.
boot() {
  : >"$log"
  qemu-system-x86_64 "${accel[@]}" -m 2G -smp 2 -nodefaults -display none -no-reboot -nic none \
    -serial stdio -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
    -append "console=ttyS0 quiet loglevel=1 panic=-1 wstrace.cmd=$cmd wstrace.project=$project $run_token" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$project,mount_tag=project,security_model=none,multidevs=remap" \
    </dev/null 2>&1 | tr -d '\r' | tee "$log" &
  local qemu_pid=$! waited=0
  while kill -0 $qemu_pid 2>/dev/null; do
    if [ $waited -ge $((timeout * 10)) ]; then
      echo "vm/run: kernel $id: no result after ${timeout}s, stopping the guest" >&2
      exit 125
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# An emulated kernel now and then dies while it boots (an oops in an early
# initcall under multi-threaded TCG, before anything of ours runs): such a
# guest is booted again, up to three boots in all. A guest that died after the
# command started is never run again, so no result of the command is hidden.
boots=3
for try in $(seq 1 $boots); do
  boot
  code=$(sed -n 's/^WSTRACE_VM_EXIT=\([0-9]*\)$/\1/p' "$log" | tail -n 1)
  [ -n "$code" ] && exit "$code"
  if grep -q '^WSTRACE_VM_STARTED$' "$log"; then
    echo "vm/run: kernel $id: the guest stopped without a result, after the command started" >&2
    exit 125
  fi
  if [ "$try" -lt $boots ]; then
    echo "vm/run: kernel $id: the guest died while booting, before the command started (its console is above); booting it again ($((try + 1)) of $boots)" >&2
  fi
done
echo "vm/run: kernel $id: the guest died while booting, $boots times in a row, before the command started" >&2
exit 125
