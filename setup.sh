#!/usr/bin/env bash
# One-step set-up for wstrace on Debian/Ubuntu with Node.js 20+, run as root.
# Idempotent: installs only missing system packages, runs `npm ci` only when
# the lock file changed, rebuilds only what changed, and links the `wstrace`
# command into npm's global bin. Quiet when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root: sudo ./setup.sh"
command -v node >/dev/null || die "Node.js is missing: install Node.js 20 or newer (for example from NodeSource), then run again."
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  die "Node.js $(node -v) is too old: wstrace needs Node.js 20 or newer."

# Build tools for the BPF object and the addon, libbpf, and the tools the
# tests and captures use (nstat/ip/ss from iproute2, sysctl, setpriv, tcpdump, tmux, openssl),
# and Prometheus with promtool (the metrics tests scrape agents with a real server and check the rules),
# and containerd, runc, busybox-static and the CNI plugins (the container tests run their own containerd
# on a private socket, with a sandbox image built from busybox, no registry needed; a pod of its own
# network gets a veth end through CNI host-device).
packages=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool make g++ python3 pkg-config xz-utils patch
  iproute2 procps util-linux tcpdump tmux openssl bpftrace prometheus
  containerd runc busybox-static containernetworking-plugins)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start their own Prometheus on loopback; the package also enables a
  # system-wide one on :9090, which nobody asked for here.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  # Likewise containerd: the tests start and stop one of their own, nothing should keep running.
  if [[ " ${missing[*]} " == *" containerd "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now containerd >/dev/null 2>&1 || true
  fi
fi

# npm ci only when the lock file differs from what was installed.
stamp=node_modules/.wstrace-lock
if ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
  say "installing npm dependencies"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# BPF object + skeleton (make), addon (node-gyp, incremental), TypeScript.
npm run --silent build >/dev/null

# `wstrace` on the PATH, where `sudo` finds it too.
bindir="$(npm prefix -g)/bin"
target="$(pwd)/bin/wstrace.js"
if [ "$(readlink -f "$bindir/wstrace" 2>/dev/null)" != "$target" ]; then
  ln -sf "$target" "$bindir/wstrace"
  say "linked $bindir/wstrace"
fi
