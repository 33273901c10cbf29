#!/usr/bin/env bash
# Boots the cached Debian kernel of one series (vm/fetch.sh) under qemu with
# the host root shared read-only and the project read-write, runs COMMAND
# there, streams its output, and exits with its exit code (125 when the guest
# died or timed out). First prints, on stderr, a WSTRACE_VM_KERNEL line naming
# the exact packages and release booted.
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

cmd=$(printf '%q ' "$@" | base64 -w0)
log=$(mktemp)
# A token of this run only: cleanup stops this guest, never another run's from the same checkout.
run_token="wstrace.run=$$.$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
qemu-system-x86_64 "${accel[@]}" -m 2G -smp 2 -nodefaults -display none -no-reboot -nic none \
  -serial stdio -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
  -append "console=ttyS0 quiet loglevel=1 panic=-1 wstrace.cmd=$cmd wstrace.project=$project $run_token" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$project,mount_tag=project,security_model=none,multidevs=remap" \
  </dev/null 2>&1 | tr -d '\r' | tee "$log" &
qemu_pid=$!
cleanup() { pkill -P $$ qemu-system-x86 2>/dev/null || true; pkill -f "$run_token" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

waited=0
while kill -0 $qemu_pid 2>/dev/null; do
  if [ $waited -ge $((timeout * 10)) ]; then
    echo "vm/run: kernel $id: no result after ${timeout}s, stopping the guest" >&2
    exit 125
  fi
  sleep 0.1
  waited=$((waited + 1))
done
code=$(sed -n 's/^WSTRACE_VM_EXIT=\([0-9]*\)$/\1/p' "$log" | tail -n 1)
if [ -z "$code" ]; then
  echo "vm/run: kernel $id: the guest stopped without a result" >&2
  exit 125
fi
exit "$code"
